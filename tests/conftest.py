"""Shared fixtures of the test suite. The emulator fixtures come from django_experience.testing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from django_experience import delivery, middleware
from django_experience.breaker import breaker
from tests.databases import subprocess_database
from tests.stub_server import StubServer

# CI runs the same examples every time (a submission must not fail on a new random draw);
# a developer's `make test` keeps exploring new ones. Neither has a deadline: an example that
# a loaded machine stalls for 200 ms says nothing about the code, and speed has benchmarks.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, deadline=None)
hypothesis_settings.register_profile("dev", deadline=None)
hypothesis_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


@pytest.fixture(autouse=True)
def isolated_process_state() -> Iterator[None]:
    """Every test starts with an empty delivery queue, zero counters, a closed breaker and no
    view learned to prefetch (else which request carries a page view would depend on the tests
    that ran before).

    pytest-django runs transactional tests last, so no test can rely on its neighbour in the
    file to have cleaned up.
    """
    delivery.reset()
    breaker.reset()
    middleware._personalized_streaks.clear()
    yield
    delivery.reset()
    breaker.reset()
    middleware._personalized_streaks.clear()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    """A recording HTTP stub on 127.0.0.1 answering ``{"data": {}, "error": null}`` by default."""
    with StubServer() as server:
        yield server


@pytest.fixture
def subprocess_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database for Django in another process (``tests.databases``)."""
    with subprocess_database(tmp_path / "subprocess.sqlite3") as url:
        yield url
