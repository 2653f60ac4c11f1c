"""EXPERIENCE_DELIVERY = "thread": queue, batches, retries, failure reports, over real HTTP."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from django_experience.api.errors import ExperienceAPIError
from tests.delivery.helpers import batch_requests, profiles_answer, sent_events, track
from tests.stub_server import RecordedRequest, StubResponse, StubServer, error_envelope, ok_envelope

failures: list[tuple[BaseException, list[dict[str, Any]], str]] = []


def record_failure(exc: BaseException, payloads: list[dict[str, Any]], sink: str) -> None:
    failures.append((exc, payloads, sink))


@pytest.fixture
def threaded(api: StubServer, settings: SettingsWrapper) -> StubServer:
    settings.EXPERIENCE_DELIVERY = "thread"
    failures.clear()
    return api


def test_enqueue_returns_before_the_api_answers(threaded: StubServer) -> None:
    threaded.responder = lambda request: StubResponse(
        200, {"data": profiles_answer(request), "error": None}, delay=0.5
    )
    started = time.monotonic()
    for index in range(20):
        delivery.enqueue(track(f"p{index}"))
    assert time.monotonic() - started < 0.5  # never waits for the network (0.5 s a send)
    assert delivery.flush(timeout=10)
    assert len(sent_events(threaded)) == 20


def test_events_are_batched_within_the_api_limits(
    threaded: StubServer, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 5  # only the flush or the round size ends a round
    settings.EXPERIENCE_DELIVERY_BATCH_SIZE = 500
    events = [track(f"profile-{index % 120}", step=index) for index in range(360)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    requests = batch_requests(threaded)
    assert sorted(e["messageId"] for e in sent_events(threaded)) == sorted(
        e["messageId"] for e in events
    )
    for request in requests:
        body = request.json()["events"]
        assert len(body) <= 200
        assert len({e["anonymousId"] for e in body}) <= 50
    assert len(requests) < 20  # batched, not one request per event
    # per-profile order is kept
    steps: dict[str, list[int]] = {}
    for event in sent_events(threaded):
        steps.setdefault(event["anonymousId"], []).append(event["properties"]["step"])
    assert all(values == sorted(values) for values in steps.values())
    assert delivery.counters() == {
        "queued": 360,
        "sent": 360,
        "retried": 0,
        "dropped": 0,
        "failed": 0,
    }


def test_batches_respect_the_byte_limit(threaded: StubServer, settings: SettingsWrapper) -> None:
    settings.EXPERIENCE_DELIVERY_MAX_BATCH_BYTES = 4096
    for index in range(30):
        delivery.enqueue(track(f"p{index}", blob="x" * 500))
    assert delivery.flush(timeout=10)
    assert len(sent_events(threaded)) == 30
    assert all(len(request.body) <= 4096 for request in batch_requests(threaded))


def test_round_is_sent_after_the_flush_interval_without_flush(threaded: StubServer) -> None:
    delivery.enqueue(track("p1"))
    deadline = time.monotonic() + 5
    while not batch_requests(threaded) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sent_events(threaded)) == 1


# "inf" reads as a number, but no lock, event or socket can wait that long: OverflowError in
# the thread (which a dead consumer's warning shows, hence the filter), or in the exit flush.
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
@pytest.mark.parametrize("name", ["FLUSH_INTERVAL", "TIMEOUT", "EXIT_TIMEOUT"])
def test_an_infinite_duration_means_as_long_as_it_takes(
    threaded: StubServer, settings: SettingsWrapper, name: str
) -> None:
    setattr(settings, f"EXPERIENCE_DELIVERY_{name}", float("inf"))
    threaded.enqueue(error_envelope(503, "ERR_INTERNAL_SERVER_ERROR", "down"))
    delivery.enqueue(track("p1"))
    time.sleep(0.1)  # the consumer is in the round's wait (FLUSH_INTERVAL) by now
    assert delivery.shutdown()  # EXIT_TIMEOUT's budget: a flush, and the thread stops
    assert len(batch_requests(threaded)) == 2 and not failures  # the 503, then its retry


def test_an_infinite_backoff_is_a_wait_the_exit_ends_and_reports(
    threaded: StubServer, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY_BACKOFF = settings.EXPERIENCE_DELIVERY_BACKOFF_MAX = math.inf
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"
    threaded.enqueue(error_envelope(503, "ERR_INTERNAL_SERVER_ERROR", "down"))
    event = track("p1")
    delivery.enqueue(event)
    assert not delivery.flush(timeout=0.3)  # the consumer waits out its (day-long) backoff
    delivery.shutdown(timeout=0.5)
    [(exc, payloads, _)] = failures  # before, the wait raised and the event was lost unreported
    assert isinstance(exc, ExperienceAPIError) and exc.status == 503
    assert payloads == [event] and len(batch_requests(threaded)) == 1


def test_retries_overload_server_errors_and_dropped_connections(threaded: StubServer) -> None:
    threaded.enqueue(
        error_envelope(429, "ERR_PROFILE_OVERLOAD"),
        error_envelope(500, "ERR_INTERNAL_SERVER_ERROR"),
        StubResponse(drop=True),
        StubResponse(503, b"Service Unavailable"),
    )
    events = [track("p1", n=1), track("p2", n=2)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert len(batch_requests(threaded)) == 5
    assert batch_requests(threaded)[-1].json()["events"] == events
    counts = delivery.counters()
    assert counts["sent"] == 2
    assert counts["retried"] == 8
    assert counts["failed"] == 0


@pytest.mark.parametrize("status", [404, 405, 410])
def test_answers_that_are_not_the_api_s_are_retried(threaded: StubServer, status: int) -> None:
    """A gateway during a deploy answers its own 404 (no error code: every 404 of the API has
    one), 405 or 410: the events are sent again once the API is back, not given up on."""
    threaded.enqueue(
        StubResponse(status, b"<html>Not here</html>", {"Content-Type": "text/html"}),
        StubResponse(status, b"<html>Not here</html>", {"Content-Type": "text/html"}),
    )
    event = track("p1")
    delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert len(batch_requests(threaded)) == 3
    assert batch_requests(threaded)[-1].json()["events"] == [event]
    assert delivery.counters()["failed"] == 0 and delivery.counters()["sent"] == 1


def test_an_api_404_with_its_code_is_not_retried(threaded: StubServer) -> None:
    threaded.enqueue(error_envelope(404, "ERR_CONFIG_NOT_FOUND"))
    delivery.enqueue(track("p1"))
    assert delivery.flush(timeout=10)
    assert len(batch_requests(threaded)) == 1 and delivery.counters()["failed"] == 1


def test_gives_up_after_the_bound_and_reports(
    threaded: StubServer, settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EXPERIENCE_DELIVERY_MAX_RETRIES = 2
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"
    threaded.responder = lambda request: error_envelope(503, "ERR_INTERNAL_SERVER_ERROR")
    event = track("p1")
    delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert len(batch_requests(threaded)) == 3
    assert delivery.counters()["failed"] == 1
    assert "still failing after 2 retries" in caplog.text
    [(exc, payloads, sink)] = failures
    assert getattr(exc, "status", None) == 503
    assert payloads == [event]
    assert sink == "experience"


def test_a_refused_event_does_not_take_its_batch_down(threaded: StubServer) -> None:
    def refuse_poison(request: RecordedRequest) -> StubResponse:
        if any(e["event"] == "poison" for e in request.json()["events"]):
            return error_envelope(400, "ERR_INVALID_DATA", "bad event")
        return ok_envelope(profiles_answer(request))

    threaded.responder = refuse_poison
    events = [track(f"p{index}", "poison" if index == 5 else "fine") for index in range(12)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    delivered = {e["messageId"] for e in sent_events(threaded) if e["event"] == "fine"}
    # every fine event arrived in a request that was accepted
    accepted = {
        e["messageId"]
        for r in batch_requests(threaded)
        if not any(x["event"] == "poison" for x in r.json()["events"])
        for e in r.json()["events"]
    }
    assert accepted == delivered == {e["messageId"] for e in events if e["event"] == "fine"}
    assert delivery.counters()["sent"] == 11
    assert delivery.counters()["failed"] == 1


def test_flush_with_nothing_queued_is_immediate(threaded: StubServer) -> None:
    assert delivery.flush(timeout=0)


def test_flush_times_out_while_the_api_is_slow(threaded: StubServer) -> None:
    threaded.responder = lambda request: StubResponse(
        200, {"data": profiles_answer(request), "error": None}, delay=1.0
    )
    delivery.enqueue(track("p1"))
    assert delivery.flush(timeout=0.1) is False
    assert delivery.flush(timeout=10) is True


def test_reset_waits_for_the_round_in_flight(threaded: StubServer) -> None:
    # Otherwise a test's slow send lands in the next test's API.
    threaded.responder = lambda request: StubResponse(
        200, {"data": profiles_answer(request), "error": None}, delay=0.5
    )
    delivery.enqueue(track("p1"))
    # The stub records a request when it arrives and answers 0.5 s later: the round is then
    # surely in flight (a fixed wait could end before the thread even took it).
    deadline = time.monotonic() + 10
    while not threaded.requests and time.monotonic() < deadline:
        time.sleep(0.005)
    assert threaded.requests, "the round never started"
    delivery.reset()
    assert not [t for t in threading.enumerate() if t.name == "experience-delivery"]
    assert len(threaded.requests) == 1
