"""Retries that really resend, Retry-After, and the total time budget of one call."""

from __future__ import annotations

import socket
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.errors import (
    ClientError,
    ConnectionFailed,
    InvalidData,
    NotFound,
    ProfileOverload,
    RequestTimeout,
    ServerError,
)
from django_experience.api.events import track_event
from django_experience.api.retry import (
    LONGEST_WAIT,
    Deadline,
    RetryPolicy,
    call_with_retries,
    parse_retry_after,
)
from tests.api.conftest import FAST_RETRIES
from tests.api.payloads import profile_answer
from tests.api.slow_server import SlowAnswer, SlowServer, elapsed_since
from tests.stub_server import StubResponse, StubServer, error_envelope

# Loopback scheduling jitter on a busy 2-core machine; the budget itself is what is asserted.
MARGIN = 0.25


def make_client(
    url: str, *, timeout: float, policy: RetryPolicy = FAST_RETRIES
) -> ExperienceClient:
    return ExperienceClient("org-1", base_url=url, timeout=timeout, retry_policy=policy)


@pytest.mark.parametrize(
    "failure",
    [
        error_envelope(429, "ERR_PROFILE_OVERLOAD"),
        StubResponse(503, {"data": {}, "error": True, "message": "unavailable"}),
        StubResponse(drop=True),
        StubResponse(408, b"Request Timeout", {"Connection": "close"}),
    ],
    ids=["429", "503", "dropped-connection", "408-idle-connection-closed"],
)
def test_retryable_failures_are_resent(
    stub: StubServer, client: ExperienceClient, failure: StubResponse
) -> None:
    stub.responder = profile_answer
    stub.enqueue(failure, failure)
    event = track_event("Bought")
    result = client.update_profile("p-1", [event])
    assert result.profile.id == "p-1"
    assert len(stub.requests) == 3  # two failures, then the answer: each one a new request
    assert [r.json() for r in stub.requests] == [{"events": [event]}] * 3


def test_retries_stop_at_max_retries(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = lambda request: error_envelope(429, "ERR_PROFILE_OVERLOAD")
    with pytest.raises(ProfileOverload):
        client.update_profile("p-1", [track_event("a")])
    assert len(stub.requests) == 1 + FAST_RETRIES.max_retries


def test_no_retries_when_max_retries_is_zero(stub: StubServer) -> None:
    stub.responder = lambda request: error_envelope(429, "ERR_PROFILE_OVERLOAD")
    client = ExperienceClient("org-1", base_url=stub.url, max_retries=0)
    with pytest.raises(ProfileOverload):
        client.get_profile("p-1")
    assert len(stub.requests) == 1


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (error_envelope(400, "ERR_INVALID_DATA"), InvalidData),
        (error_envelope(404, "ERR_PROFILE_NOT_FOUND"), NotFound),
        (StubResponse(401, {"data": {}, "error": True}), ClientError),
        (error_envelope(500, "ERR_INTERNAL_SERVER_ERROR"), ServerError),
    ],
    ids=["400", "404", "401", "500"],
)
def test_other_failures_are_not_retried(
    stub: StubServer, client: ExperienceClient, answer: StubResponse, expected: type[Exception]
) -> None:
    stub.responder = lambda request: answer
    with pytest.raises(expected):
        client.get_profile("p-1")
    assert len(stub.requests) == 1


def test_retry_after_seconds_is_honoured(stub: StubServer) -> None:
    stub.responder = profile_answer
    stub.enqueue(
        StubResponse(
            429,
            {"data": {}, "error": {"code": "ERR_PROFILE_OVERLOAD"}},
            headers={"Retry-After": "1"},
        )
    )
    client = make_client(stub.url, timeout=3.0)
    assert client.get_profile("p-1").profile.id == "p-1"
    first, second = stub.requests
    assert second.received_at - first.received_at >= 0.95


def test_retry_after_beyond_the_budget_gives_up_at_once(stub: StubServer) -> None:
    stub.responder = lambda request: StubResponse(
        429, {"data": {}, "error": {"code": "ERR_PROFILE_OVERLOAD"}}, headers={"Retry-After": "30"}
    )
    client = make_client(stub.url, timeout=1.0)
    start = time.monotonic()
    with pytest.raises(ProfileOverload) as caught:
        client.get_profile("p-1")
    assert elapsed_since(start) < 0.5  # does not sleep towards a retry it cannot make
    assert caught.value.retry_after == 30
    assert len(stub.requests) == 1


def test_budget_covers_a_server_that_answers_too_slowly(stub: StubServer) -> None:
    stub.enqueue(StubResponse(delay=3.0))
    client = make_client(stub.url, timeout=0.4)
    start = time.monotonic()
    with pytest.raises(RequestTimeout):
        client.get_profile("p-1")
    assert elapsed_since(start) <= 0.4 + MARGIN
    assert len(stub.requests) == 1  # a timed-out attempt used the whole budget


def test_budget_covers_retries_and_backoff(stub: StubServer) -> None:
    stub.responder = lambda request: StubResponse(503, {"data": {}, "error": True}, delay=0.15)
    policy = RetryPolicy(max_retries=50, backoff_base=0.05, backoff_max=0.1)
    client = make_client(stub.url, timeout=0.6, policy=policy)
    start = time.monotonic()
    with pytest.raises((ServerError, RequestTimeout)):
        client.get_profile("p-1")
    assert elapsed_since(start) <= 0.6 + MARGIN
    assert 2 <= len(stub.requests) < 51


def test_budget_covers_a_trickled_body() -> None:
    # 70 bytes, one every 50 ms: 3.5 s in all, every single read well under any read timeout.
    with SlowServer(SlowAnswer(byte_interval=0.05)) as server:
        client = make_client(server.url, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.get_profile("p-1")
        assert elapsed_since(start) <= 0.5 + MARGIN


def test_budget_covers_a_body_that_stalls_after_late_headers() -> None:
    # Headers come late, then the body stops: the stalled read gets only what is left.
    with SlowServer(SlowAnswer(header_delay=0.3, stall_after=10, stall_for=3)) as server:
        client = make_client(server.url, timeout=0.5)
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.get_profile("p-1")
        assert elapsed_since(start) <= 0.5 + 0.2


def test_slow_but_timely_answer_is_read() -> None:
    with SlowServer(SlowAnswer(header_delay=0.05, byte_interval=0.001)) as server:
        client = make_client(server.url, timeout=2.0)
        assert client.get_profile("p-1").profile.id == "p-1"


class CountingSession(requests.Session):
    """A session that counts the requests it starts (a refused port records nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = 0

    def request(self, *args: Any, **kwargs: Any) -> requests.Response:
        self.started += 1
        return super().request(*args, **kwargs)


def test_refused_connections_are_retried_within_the_budget() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    session = CountingSession()
    policy = RetryPolicy(max_retries=3, backoff_base=0.01, backoff_max=0.02)
    client = ExperienceClient(
        "org-1",
        base_url=f"http://127.0.0.1:{port}",
        timeout=1.0,
        retry_policy=policy,
        session=session,
    )
    start = time.monotonic()
    with pytest.raises(ConnectionFailed):
        client.get_profile("p-1")
    assert elapsed_since(start) <= 1.0
    assert session.started == 4


def test_connections_are_kept_alive(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = profile_answer
    for _ in range(3):
        client.get_profile("p-1")
    assert all(r.header("Connection") == "keep-alive" for r in stub.requests)


# The policy on its own -----------------------------------------------------------------


def test_parse_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    later = now + timedelta(seconds=7)
    assert parse_retry_after("3", now=now) == 3
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after("-4", now=now) == 0
    assert parse_retry_after(later.strftime("%a, %d %b %Y %H:%M:%S GMT"), now=now) == 7
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("") is None


def test_parse_retry_after_no_wait_is_longer_than_a_day() -> None:
    # Longer ones cannot all be waited for: a timeout past threading.TIMEOUT_MAX (an infinity,
    # 10**14 seconds) raises OverflowError in the thread waiting.
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("99999999999999", now=now) == LONGEST_WAIT == 86400
    assert parse_retry_after("Fri, 31 Dec 9999 23:59:59 GMT", now=now) == LONGEST_WAIT
    assert parse_retry_after("86399", now=now) == 86399
    for unreadable in ("inf", "1e400", "-inf", "nan", "Infinity"):
        assert parse_retry_after(unreadable, now=now) is None, unreadable


def test_backoff_grows_exponentially_with_jitter() -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_max=0.5, jitter=0.5)
    for retry, ceiling in [(0, 0.1), (1, 0.2), (2, 0.4), (3, 0.5), (8, 0.5)]:
        pauses = {policy.pause(retry) for _ in range(50)}
        assert all(ceiling / 2 <= p <= ceiling for p in pauses)
        assert len(pauses) > 1  # jittered
    assert policy.pause(0, retry_after=2.5) == 2.5


def test_call_with_retries_never_sleeps_past_the_deadline() -> None:
    slept: list[float] = []
    attempts: list[float] = []
    clock = [0.0]

    def attempt(deadline: Deadline) -> None:
        attempts.append(deadline.remaining())
        raise ProfileOverload("busy", retry_after=0.4)

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += seconds

    deadline = Deadline(1.0, clock=lambda: clock[0])
    with pytest.raises(ProfileOverload):
        call_with_retries(attempt, RetryPolicy(max_retries=10), deadline, sleep=sleep)
    assert slept == [0.4, 0.4]  # a third pause would end past the deadline
    assert attempts == pytest.approx([1.0, 0.6, 0.2])
