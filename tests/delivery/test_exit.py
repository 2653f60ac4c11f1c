"""Delivery out of time (the exit flush's deadline): every event is sent or reported, once."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from django_experience.api.errors import ExperienceAPIError
from django_experience.delivery import DeliveryStopped
from django_experience.delivery.worker import Job, QueueWorker
from tests.delivery.helpers import batch_requests, profiles_answer, tasks_module, track
from tests.delivery.test_process import run_script
from tests.stub_server import RecordedRequest, StubResponse, StubServer, error_envelope

failures: list[tuple[BaseException, list[Any], str]] = []


def record_failure(exc: BaseException, payloads: list[Any], sink: str) -> None:
    failures.append((exc, payloads, sink))


@pytest.fixture
def reported(settings: SettingsWrapper) -> list[tuple[BaseException, list[Any], str]]:
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"
    failures.clear()
    return failures


def slow(status: int) -> Any:
    """Answers every batch after 0.3 s: accepted (200) or failing (503, retried)."""

    def answer(request: RecordedRequest) -> StubResponse:
        if status == 200:
            body = {"data": profiles_answer(request), "error": None, "message": "ok"}
            return StubResponse(200, body, delay=0.3)
        response = error_envelope(503, "ERR_INTERNAL_SERVER_ERROR", "down")
        response.delay = 0.3
        return response

    return answer


@pytest.mark.parametrize("status", [200, 503])
def test_out_of_time_each_event_is_sent_or_reported_exactly_once(
    api: StubServer,
    settings: SettingsWrapper,
    reported: list[tuple[BaseException, list[Any], str]],
    status: int,
) -> None:
    # Three rounds of 0.3 s requests, 0.5 s to send them: a round is in flight at the deadline
    # (it ends, and counts, after it) and one is still queued.
    settings.EXPERIENCE_DELIVERY_BATCH_SIZE = 10
    api.responder = slow(status)
    events = [track(f"p{n}", n=n) for n in range(30)]
    delivery.enqueue_many(events)
    assert delivery.shutdown(timeout=0.5) is False
    delivered = [
        event["messageId"]
        for request in batch_requests(api)
        for event in request.json()["events"]
        if status == 200
    ]
    given_up = [payload["messageId"] for _, payloads, _ in reported for payload in payloads]
    assert given_up, "the deadline passed with events unsent"
    assert sorted(delivered + given_up) == sorted(e["messageId"] for e in events)  # once each
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"]) == (len(delivered), len(given_up))
    assert all(sink == "experience" for _, _, sink in reported)
    never_sent = [
        payload["messageId"]
        for exc, payloads, _ in reported
        if isinstance(exc, DeliveryStopped)
        for payload in payloads
    ]
    assert never_sent  # the round still queued at the deadline
    arrived = {e["messageId"] for r in batch_requests(api) for e in r.json()["events"]}
    assert not arrived & set(never_sent)


def test_a_retry_wait_ends_when_delivery_runs_out_of_time(
    api: StubServer, reported: list[tuple[BaseException, list[Any], str]]
) -> None:
    api.responder = lambda request: StubResponse(
        429,
        {"data": {}, "error": {"code": "ERR_TOO_MANY_REQUESTS"}, "message": "slow down"},
        headers={"Retry-After": "30"},
    )
    event = track("p1")
    delivery.enqueue(event)
    deadline = time.monotonic() + 10
    while not batch_requests(api) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)  # the consumer now waits the 30 s the API asked for
    started = time.monotonic()
    delivery.shutdown(timeout=5)
    assert time.monotonic() - started < 2  # the wait could never end within the 5 s
    [(exc, payloads, sink)] = reported
    assert sink == "experience"
    assert isinstance(exc, ExperienceAPIError) and exc.status == 429
    assert payloads == [event]
    assert delivery.counters()["failed"] == 1
    assert len(batch_requests(api)) == 1


def too_many_requests(retry_after: str) -> Any:
    return lambda request: StubResponse(
        429,
        {"data": {}, "error": {"code": "ERR_TOO_MANY_REQUESTS"}, "message": "slow down"},
        headers={"Retry-After": retry_after},
    )


def test_a_retry_after_longer_than_any_wait_is_waited_for_until_shutdown(
    api: StubServer, reported: list[tuple[BaseException, list[Any], str]]
) -> None:
    # 10**14 s: a wait of that length raised OverflowError in the delivery thread, and the
    # events were lost without reaching EXPERIENCE_DELIVERY_ON_ERROR.
    api.responder = too_many_requests("99999999999999")
    event = track("p1")
    delivery.enqueue(event)
    deadline = time.monotonic() + 10
    while not batch_requests(api) and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.1)
    delivery.shutdown(timeout=5)
    [(exc, payloads, _)] = reported
    assert isinstance(exc, ExperienceAPIError) and exc.status == 429
    assert payloads == [event]


def test_an_infinite_retry_after_is_unreadable_and_backoff_applies(
    api: StubServer, reported: list[tuple[BaseException, list[Any], str]], settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY_MAX_RETRIES = 2
    api.responder = too_many_requests("1e400")
    event = track("p1")
    delivery.enqueue(event)
    assert delivery.flush(timeout=5)
    [(exc, payloads, _)] = reported
    assert isinstance(exc, ExperienceAPIError) and exc.status == 429
    assert payloads == [event]
    assert len(batch_requests(api)) == 3  # the first and two retries, after the backoff


def test_the_tasks_dispatcher_enqueues_nothing_out_of_time(
    api: StubServer, reported: list[tuple[BaseException, list[Any], str]]
) -> None:
    tasks_module()
    from django_experience.delivery.tasks import task_dispatcher

    events = [track(f"p{n}", n=n) for n in range(3)]
    task_dispatcher("experience", events, lambda seconds: False)
    [(exc, payloads, sink)] = reported
    assert sink == "experience"
    assert isinstance(exc, DeliveryStopped)
    assert payloads == events


def test_events_unsent_at_exit_are_reported(api: StubServer) -> None:
    api.responder = slow(503)
    result = run_script(
        api,
        """
        import atexit, json
        from django_experience import delivery
        from tests.delivery.helpers import track
        # Registered before delivery's own exit flush, so it runs after it.
        atexit.register(lambda: print("COUNTERS " + json.dumps(delivery.counters())))
        for n in range(30):
            delivery.enqueue(track(f"p{n}", n=n))
        """,
        EXPERIENCE_DELIVERY_EXIT_TIMEOUT="1",
        EXPERIENCE_DELIVERY_BATCH_SIZE="10",
        EXPERIENCE_DELIVERY_ON_ERROR="tests.delivery.helpers.print_failure",
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    reports = [json.loads(line.split(" ", 1)[1]) for line in lines if line.startswith("ON_ERROR")]
    ids = [message_id for report in reports for message_id in report["messageIds"]]
    assert len(ids) == len(set(ids)) == 30, result.stdout
    [counters] = [json.loads(line.split(" ", 1)[1]) for line in lines if "COUNTERS" in line]
    assert (counters["sent"], counters["failed"]) == (0, 30)
    assert "in flight" not in result.stderr


def test_backends_share_the_exit_deadline(
    monkeypatch: pytest.MonkeyPatch, settings: SettingsWrapper
) -> None:
    # Two backends' queues, each with far more work than the budget (rounds of 0.2 s that no
    # deadline interrupts): flushing one after the other would give each the whole budget.
    settings.EXPERIENCE_DELIVERY_BATCH_SIZE = 1
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"

    def busy(sink: str, payloads: list[Any], wait: Any) -> None:
        time.sleep(0.2)

    for backend in ("thread", "tasks"):
        worker = QueueWorker(busy, name=f"test-{backend}")
        monkeypatch.setitem(delivery._workers, backend, worker)
        worker.put_many([Job("experience", track(f"{backend}{n}", n=n)) for n in range(20)])
    started = time.monotonic()
    assert delivery.shutdown(timeout=1.0) is False
    # One budget plus the round in flight at the deadline; twice that if flushed in turn.
    assert time.monotonic() - started < 1.8
