"""Shared fixtures of the test suite. The emulator fixtures come from django_experience.testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_experience import delivery
from django_experience.breaker import breaker
from tests.stub_server import StubServer


@pytest.fixture(autouse=True)
def isolated_process_state() -> Iterator[None]:
    """Every test starts with an empty delivery queue, zero counters and a closed breaker.

    pytest-django runs transactional tests last, so no test can rely on its neighbour in the
    file to have cleaned up.
    """
    delivery.reset()
    breaker.reset()
    yield
    delivery.reset()
    breaker.reset()


@pytest.fixture
def stub() -> Iterator[StubServer]:
    """A recording HTTP stub on 127.0.0.1 answering ``{"data": {}, "error": null}`` by default."""
    with StubServer() as server:
        yield server
