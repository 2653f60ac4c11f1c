"""Fixtures of the template tag tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_experience.breaker import breaker


@pytest.fixture(autouse=True)
def closed_breaker() -> Iterator[None]:
    """Each test starts with the API reachable: faults of one test must not open the breaker
    for the next."""
    breaker.reset()
    yield
    breaker.reset()
