"""A created profile is not asked for twice: each stored create makes a new profile, so one
whose request went out whole and then lost its answer is not sent again (a second visitor
profile would be left behind). What never reached the server is retried as any call is."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.errors import ConnectionFailed
from django_experience.api.events import page_event
from tests.api.conftest import FAST_RETRIES
from tests.api.payloads import profile_answer
from tests.api.test_retries import CountingSession
from tests.stub_server import StubResponse, StubServer

DROP = StubResponse(drop=True)  # the whole request is read, then the connection closed


@pytest.fixture(params=["kept-alive", "session"])
def route_client(request: pytest.FixtureRequest, stub: StubServer) -> Iterator[ExperienceClient]:
    """A client on its own kept-alive connections, or on a caller's ``requests`` session."""
    session = requests.Session() if request.param == "session" else None
    with ExperienceClient(
        "org-1", base_url=stub.url, timeout=2.0, retry_policy=FAST_RETRIES, session=session
    ) as client:
        yield client
    if session is not None:
        session.close()


def test_a_create_the_server_may_have_acted_on_is_not_sent_again(
    stub: StubServer, route_client: ExperienceClient
) -> None:
    stub.responder = profile_answer
    stub.enqueue(DROP)
    with pytest.raises(ConnectionFailed) as raised:
        route_client.create_profile([page_event("/")])
    assert raised.value.maybe_applied is True
    assert len(stub.requests) == 1


def test_a_preflight_create_stores_nothing_and_is_sent_again(
    stub: StubServer, route_client: ExperienceClient
) -> None:
    stub.responder = profile_answer
    stub.enqueue(DROP)
    assert route_client.create_profile([page_event("/")], preflight=True).profile.id
    assert len(stub.requests) == 2


def test_an_update_is_sent_again_with_the_same_events(
    stub: StubServer, route_client: ExperienceClient
) -> None:
    # The same profile id and the same messageIds: the second request is the first one again.
    stub.responder = profile_answer
    stub.enqueue(DROP)
    route_client.update_profile("p-1", [page_event("/")])
    assert len(stub.requests) == 2
    assert stub.requests[0].body == stub.requests[1].body


def test_a_create_on_a_kept_alive_connection_closed_as_it_was_reused_is_sent_again(
    stub: StubServer, client: ExperienceClient
) -> None:
    # A connection that answered before and ends without a byte of this answer: the server
    # closed it as the request arrived (how idle connections end), so it was not acted on.
    stub.responder = profile_answer
    client.get_profile("p-1")
    stub.enqueue(DROP)
    assert client.create_profile([page_event("/")]).profile.id
    assert [r.path.rsplit("/", 1)[-1] for r in stub.requests] == ["p-1", "profiles", "profiles"]


def test_a_create_answered_408_was_not_read_and_is_sent_again(
    stub: StubServer, route_client: ExperienceClient
) -> None:
    # 408: the server ended the connection without reading a request from it.
    stub.responder = profile_answer
    stub.enqueue(StubResponse(408, b"Request Timeout", {"Connection": "close"}))
    assert route_client.create_profile([page_event("/")]).profile.id
    assert len(stub.requests) == 2


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def test_a_create_that_could_not_connect_is_retried() -> None:
    session = CountingSession()
    client = ExperienceClient(
        "org-1",
        base_url=f"http://127.0.0.1:{_closed_port()}",
        timeout=1.0,
        retry_policy=FAST_RETRIES,
        session=session,
    )
    with pytest.raises(ConnectionFailed) as raised:
        client.create_profile([page_event("/")])
    assert raised.value.maybe_applied is False
    assert session.started == 1 + FAST_RETRIES.max_retries


def test_a_refused_connection_on_the_kept_alive_path_was_not_applied() -> None:
    client = ExperienceClient(
        "org-1", base_url=f"http://127.0.0.1:{_closed_port()}", timeout=1.0, max_retries=0
    )
    with pytest.raises(ConnectionFailed) as raised:
        client.create_profile([page_event("/")])
    assert raised.value.maybe_applied is False
