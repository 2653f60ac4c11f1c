"""Shared fixtures of the test suite. The emulator fixtures come from django_experience.testing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.stub_server import StubServer


@pytest.fixture
def stub() -> Iterator[StubServer]:
    """A recording HTTP stub on 127.0.0.1 answering ``{"data": {}, "error": null}`` by default."""
    with StubServer() as server:
        yield server
