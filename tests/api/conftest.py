"""Fixtures of the client tests: one recording stub per module, a client with fast backoff."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from django_experience.api import ExperienceClient
from django_experience.api.retry import RetryPolicy
from tests.stub_server import StubServer, ok_envelope

FAST_RETRIES = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.05)


@pytest.fixture(scope="module")
def shared_stub() -> Iterator[StubServer]:
    # Stopping a stub takes up to its poll interval; one per module keeps the tests fast.
    with StubServer() as server:
        yield server


@pytest.fixture
def stub(shared_stub: StubServer) -> StubServer:
    """The module's stub, emptied: no recorded requests, no scripted answers, default responder."""
    with shared_stub._lock:
        shared_stub._queue.clear()
        shared_stub.requests.clear()
    shared_stub.responder = lambda request: ok_envelope({})
    return shared_stub


@pytest.fixture
def client(stub: StubServer) -> Iterator[ExperienceClient]:
    with ExperienceClient(
        "org-1", environment="env-1", base_url=stub.url, timeout=2.0, retry_policy=FAST_RETRIES
    ) as experience_client:
        yield experience_client
