"""A call's own ``timeout``: it replaces the client's budget for that one call, and a call with
nothing left (zero, negative, NaN) raises RequestTimeout without sending anything."""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.errors import RequestTimeout
from django_experience.api.events import track_event
from tests.api.conftest import FAST_RETRIES
from tests.api.payloads import batch_answer, profile_answer
from tests.api.slow_server import elapsed_since
from tests.stub_server import StubResponse, StubServer

MARGIN = 0.25
EVENT = track_event("Bought")

Call = Callable[[ExperienceClient, float | None], Any]

CALLS: dict[str, Call] = {
    "create_profile": lambda client, timeout: client.create_profile([EVENT], timeout=timeout),
    "update_profile": lambda client, timeout: client.update_profile(
        "p-1", [EVENT], timeout=timeout
    ),
    "get_profile": lambda client, timeout: client.get_profile("p-1", timeout=timeout),
    "delete_profile": lambda client, timeout: client.delete_profile("p-1", timeout=timeout),
}


def make_client(
    url: str, *, timeout: float, session: requests.Session | None = None
) -> ExperienceClient:
    return ExperienceClient(
        "org-1", base_url=url, timeout=timeout, retry_policy=FAST_RETRIES, session=session
    )


@pytest.fixture(params=["kept-alive", "requests"])
def session(request: pytest.FixtureRequest) -> requests.Session | None:
    """Both transports: the client's own kept-alive path, and a caller's requests session."""
    return None if request.param == "kept-alive" else requests.Session()


@pytest.mark.parametrize("name", CALLS)
def test_a_shorter_call_budget_replaces_the_clients(
    stub: StubServer, session: requests.Session | None, name: str
) -> None:
    stub.responder = lambda request: StubResponse(200, {"data": {}}, delay=2.0)
    client = make_client(stub.url, timeout=10.0, session=session)
    start = time.monotonic()
    with pytest.raises(RequestTimeout):
        CALLS[name](client, 0.3)
    assert elapsed_since(start) <= 0.3 + MARGIN
    assert len(stub.requests) == 1


@pytest.mark.parametrize("name", CALLS)
def test_a_longer_call_budget_replaces_the_clients(
    stub: StubServer, session: requests.Session | None, name: str
) -> None:
    def slow_answer(request: Any) -> StubResponse:
        return dataclasses.replace(profile_answer(request), delay=0.4)

    stub.responder = slow_answer
    client = make_client(stub.url, timeout=0.1, session=session)
    CALLS[name](client, 3.0)  # the client's 0.1 s would have timed out
    with pytest.raises(RequestTimeout):
        CALLS[name](client, None)  # without one, the client's budget applies


@pytest.mark.parametrize("budget", [0.0, -0.5, math.nan], ids=["zero", "negative", "nan"])
@pytest.mark.parametrize("name", CALLS)
def test_no_time_left_raises_without_sending(
    stub: StubServer, session: requests.Session | None, name: str, budget: float
) -> None:
    client = make_client(stub.url, timeout=2.0, session=session)
    with pytest.raises(RequestTimeout, match="no time left"):
        CALLS[name](client, budget)
    assert stub.requests == []


@pytest.mark.parametrize("method", ["upsert_profiles", "import_events"])
def test_a_batch_call_gives_the_budget_to_each_request(stub: StubServer, method: str) -> None:
    # Three requests of 0.4 s each: 1.2 s in all, over the 1 s budget, and yet no timeout
    # (each request keeps 0.6 s to spare: a loaded machine took over 0.25 s more for one).
    def slow_batch(request: Any) -> StubResponse:
        return dataclasses.replace(batch_answer(request), delay=0.4)

    stub.responder = slow_batch
    client = make_client(stub.url, timeout=1.0)
    events = [{"anonymousId": f"a-{i % 40}", "type": "track", "event": "x"} for i in range(450)]
    start = time.monotonic()
    getattr(client, method)(events)
    assert len(stub.requests) == 3
    assert elapsed_since(start) > 1.0


def test_an_infinite_budget_is_refused(stub: StubServer) -> None:
    client = make_client(stub.url, timeout=2.0)
    with pytest.raises(ValueError, match="finite"):
        client.get_profile("p-1", timeout=math.inf)
    with pytest.raises(ValueError, match="timeout"):
        ExperienceClient("org-1", timeout=math.inf)
    assert stub.requests == []
