"""EXPERIENCE_DELIVERY = "tasks": one Django Task per batch (``django.tasks`` on Django 6, the
``django-tasks`` backport before it; each run tests the one its Django uses)."""

from __future__ import annotations

import contextlib
import datetime
import importlib
import json
import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.utils.module_loading import import_string
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from django_experience.api.errors import InvalidData
from tests.databases import require_django_tasks_db
from tests.delivery.helpers import TASKS_MODULE, batch_requests, sent_events, tasks_module, track
from tests.stub_server import StubServer

tasks = tasks_module()  # Django's own on Django 6, the backport before (skipped without it)
signals = importlib.import_module(f"{TASKS_MODULE}.signals")  # resets backends on TASKS changes

ROOT = Path(__file__).resolve().parents[2]
IMMEDIATE = f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"
DUMMY = f"{TASKS_MODULE}.backends.dummy.DummyBackend"


def use_tasks(settings: SettingsWrapper, backend: str) -> Any:
    settings.EXPERIENCE_DELIVERY = "tasks"
    settings.TASKS = {"default": {"BACKEND": backend}}
    return tasks.task_backends["default"]


@contextlib.contextmanager
def enqueued_tasks() -> Iterator[list[Any]]:
    """Every task result enqueued meanwhile, from any thread (the dummy backend keeps its
    results per thread; the signal sees every enqueue)."""
    results: list[Any] = []

    def record(sender: object, task_result: Any, **kwargs: object) -> None:
        results.append(task_result)

    signals.task_enqueued.connect(record, weak=False)
    try:
        yield results
    finally:
        signals.task_enqueued.disconnect(record)


def test_immediate_backend_sends_each_batch(api: StubServer, settings: SettingsWrapper) -> None:
    use_tasks(settings, IMMEDIATE)
    events = [track(f"p{n}", n=n) for n in range(5)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert sent_events(api) == events
    assert delivery.counters()["sent"] == 5


EVENTS = [track(f"profile-{n % 120}", n=n) for n in range(240)]


def _enqueue_and_flush_many() -> None:
    for event in EVENTS:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)


def test_one_task_per_api_sized_batch(api: StubServer, settings: SettingsWrapper) -> None:
    use_tasks(settings, DUMMY)
    settings.EXPERIENCE_DELIVERY_BATCH_SIZE = 1000
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 5
    with enqueued_tasks() as results:
        _enqueue_and_flush_many()
    assert batch_requests(api) == []  # enqueued as tasks, not sent here

    assert len(results) >= 3  # 120 profiles need at least three requests of <= 50 profiles
    for result in results:
        sink_name, texts = result.args
        assert sink_name == "experience"
        assert all(isinstance(text, str) for text in texts)  # each event as its JSON text
        assert len({json.loads(text)["anonymousId"] for text in texts}) <= 50
    # A worker runs them (here: in order, in this process).
    outcomes = [result.task.call(*result.args) for result in results]
    assert sum(outcome["sent"] for outcome in outcomes) == 240
    assert sorted(e["messageId"] for e in sent_events(api)) == sorted(
        e["messageId"] for e in EVENTS
    )


def test_task_failure_is_reported_in_its_result(api: StubServer, settings: SettingsWrapper) -> None:
    from django_experience.delivery.tasks import deliver_batch

    settings.EXPERIENCE_DELIVERY_MAX_RETRIES = 1
    with StubServer() as down:
        settings.EXPERIENCE_API_URL = down.url
    # the port now refuses connections
    assert import_string(deliver_batch.module_path) is deliver_batch  # what a worker imports
    outcome = deliver_batch.call("experience", [track("p1")])
    assert outcome == {"sent": 0, "deferred": 0, "failed": 1}


failures: list[tuple[BaseException, list[Any], str]] = []


def record_failure(exc: BaseException, payloads: list[Any], sink: str) -> None:
    failures.append((exc, payloads, sink))


def test_dates_and_uuids_travel_as_the_api_receives_them(
    api: StubServer, settings: SettingsWrapper
) -> None:
    """What the client's encoder sends (the thread and sync backends do), a task carries too."""
    use_tasks(settings, IMMEDIATE)
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 1  # one round, one batch
    placed = datetime.datetime(2024, 5, 1, 12, 30, tzinfo=datetime.timezone.utc)
    order = uuid.UUID(int=1)
    events = [track(f"p{n}", n=n) for n in range(9)]
    events.append(track("p9", "Order placed", placed_at=placed, order=order))
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert delivery.counters()["failed"] == 0
    assert delivery.counters()["sent"] == 10
    assert len(batch_requests(api)) == 1
    assert sent_events(api)[-1]["properties"] == {
        "placed_at": "2024-05-01T12:30:00+00:00",
        "order": "00000000-0000-0000-0000-000000000001",
    }


def test_an_event_that_is_not_json_is_reported_alone(
    api: StubServer, settings: SettingsWrapper
) -> None:
    use_tasks(settings, IMMEDIATE)
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 1
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"
    failures.clear()
    bad = track("p4", "Broken", value={1, 2})  # a set has no JSON form
    events = [track(f"p{n}", n=n) for n in range(4)] + [bad]
    events += [track(f"p{n}", n=n) for n in range(5, 10)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert [e["messageId"] for e in sent_events(api)] == [
        e["messageId"] for e in events if e is not bad
    ]
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"]) == (9, 1)
    [(exc, payloads, sink)] = failures
    assert isinstance(exc, InvalidData)
    assert payloads == [bad]
    assert sink == "experience"


def test_the_task_sends_its_json_text_as_it_is(api: StubServer) -> None:
    from django_experience.delivery.tasks import deliver_batch

    text = json.dumps(track("p1", n=1), indent=1)  # not how the client would encode it
    outcome = deliver_batch.call("experience", [text])
    assert outcome == {"sent": 1, "deferred": 0, "failed": 0}
    [request] = batch_requests(api)
    assert request.body == b'{"events":[' + text.encode() + b"]}"


@pytest.fixture
def database_env(api: StubServer, subprocess_database_url: str) -> dict[str, str]:
    """The environment of subprocesses using the database task backend (migrated)."""
    require_django_tasks_db()
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.delivery.tasks_db_settings",
        "TEST_DATABASE_URL": subprocess_database_url,
        "TEST_API_URL": api.url,
    }
    migrate = [sys.executable, "-m", "django", "migrate", "-v", "0"]
    subprocess.run(migrate, env=env, check=True, timeout=60)
    return env


def test_the_consumer_thread_closes_its_database_connection(
    api: StubServer, database_env: dict[str, str]
) -> None:
    """No request ever ends in the consumer thread: it closes its ORM connection itself, so one
    the database dropped while idle does not fail every later enqueue."""
    script = textwrap.dedent(
        """
        import django, gc
        django.setup()
        from django.db import connections
        from django.db.backends.base.base import BaseDatabaseWrapper
        from django_experience import delivery
        from django_tasks_db.models import DBTaskResult
        from tests.delivery.helpers import track

        delivery.enqueue(track("p1", n=0))
        assert delivery.flush(timeout=10)
        mine = connections["default"]
        held = [
            wrapper
            for wrapper in gc.get_objects()
            if isinstance(wrapper, BaseDatabaseWrapper)
            and wrapper is not mine
            and wrapper.connection is not None
        ]
        print("held", len(held))
        for wrapper in held:  # the database drops the idle connection (restart, idle timeout)
            wrapper.connection.close()
        for n in range(1, 4):
            delivery.enqueue(track("p1", n=n))
            assert delivery.flush(timeout=10)
        print("failed", delivery.counters()["failed"])
        print("stored", DBTaskResult.objects.count())
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=database_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["held", "0", "failed", "0", "stored", "4"], result.stderr


def test_database_backend_and_its_worker(api: StubServer, database_env: dict[str, str]) -> None:
    """Events become task rows in the database; a separate worker process sends them."""
    env = database_env
    django = [sys.executable, "-m", "django"]
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django_experience import delivery
        from tests.delivery.helpers import track
        for n in range(120):
            delivery.enqueue(track(f"profile-{n % 60}", n=n))
        assert delivery.flush(timeout=20)
        """
    )
    enqueued = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert enqueued.returncode == 0, enqueued.stderr
    assert batch_requests(api) == []  # stored as tasks, nothing sent yet
    worker = subprocess.run(
        [*django, "db_worker", "--batch", "--no-startup-delay", "--interval", "0.05"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    events = sent_events(api)
    assert sorted(e["properties"]["n"] for e in events) == list(range(120))
    assert len(batch_requests(api)) >= 2  # 60 profiles: more than one request


def _too_many_requests(seconds: int) -> Any:
    from tests.stub_server import StubResponse

    return StubResponse(
        429,
        {"data": {}, "error": {"code": "ERR_TOO_MANY_REQUESTS"}, "message": "slow down"},
        headers={"Retry-After": str(seconds)},
    )


def test_a_long_retry_wait_becomes_a_task_run_later(
    api: StubServer, settings: SettingsWrapper
) -> None:
    # Waited inside the task, a Retry-After would keep the worker from every other task of
    # the site for that long.
    from django.utils import timezone

    from django_experience.delivery.tasks import deliver_batch

    use_tasks(settings, DUMMY)
    event = track("p1", n=1)
    text = json.dumps(event)
    api.enqueue(_too_many_requests(120))
    with enqueued_tasks() as enqueued:
        outcome = deliver_batch.call("experience", [text])
    assert outcome == {"sent": 0, "deferred": 1, "failed": 0}
    assert delivery.counters()["failed"] == 0
    (later,) = enqueued
    assert list(later.args) == ["experience", [text]]
    assert later.kwargs == {"retries": 1}
    wait = (later.task.run_after - timezone.now()).total_seconds()
    assert 110 < wait <= 120
    # The worker runs it when it is due: the same bytes, the same message id.
    assert later.task.call(*later.args, **later.kwargs) == {"sent": 1, "deferred": 0, "failed": 0}
    first, second = batch_requests(api)
    assert first.body == second.body
    assert sent_events(api)[-1]["messageId"] == event["messageId"]


def test_deferred_runs_count_towards_the_retry_limit(
    api: StubServer, settings: SettingsWrapper
) -> None:
    from django_experience.delivery.tasks import deliver_batch

    use_tasks(settings, DUMMY)
    settings.EXPERIENCE_DELIVERY_MAX_RETRIES = 2
    settings.EXPERIENCE_DELIVERY_ON_ERROR = "tests.delivery.test_tasks.record_failure"
    failures.clear()
    api.responder = lambda request: _too_many_requests(60)
    text = json.dumps(track("p1"))
    with enqueued_tasks() as enqueued:
        deliver_batch.call("experience", [text], retries=1)  # its second retry: deferred
        (last,) = enqueued
        assert last.kwargs == {"retries": 2}
        outcome = last.task.call(*last.args, **last.kwargs)
    assert outcome == {"sent": 0, "deferred": 0, "failed": 1}
    assert len(enqueued) == 1  # given up, not deferred again
    ((exc, payloads, sink),) = failures
    assert getattr(exc, "status", None) == 429
    assert sink == "experience" and [p["messageId"] for p in payloads] == [
        json.loads(text)["messageId"]
    ]


def test_a_short_retry_wait_is_waited_in_the_task(
    api: StubServer, settings: SettingsWrapper
) -> None:
    from django_experience.delivery.tasks import deliver_batch
    from tests.stub_server import StubResponse

    use_tasks(settings, DUMMY)
    api.enqueue(StubResponse(503, {"data": {}, "error": {"code": "ERR_INTERNAL_SERVER_ERROR"}}))
    with enqueued_tasks() as enqueued:
        outcome = deliver_batch.call("experience", [json.dumps(track("p1"))])
    assert outcome == {"sent": 1, "deferred": 0, "failed": 0}
    assert enqueued == [] and len(batch_requests(api)) == 2


def test_a_backend_that_cannot_defer_waits_in_the_task(
    api: StubServer, settings: SettingsWrapper, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_experience.delivery import tasks as delivery_tasks

    use_tasks(settings, IMMEDIATE)
    monkeypatch.setattr(delivery_tasks, "LONGEST_WAIT_IN_TASK", 0.0)  # every wait is "long"
    api.enqueue(_too_many_requests(1))
    with enqueued_tasks() as enqueued:
        outcome = delivery_tasks.deliver_batch.call("experience", [json.dumps(track("p1"))])
    assert outcome == {"sent": 1, "deferred": 0, "failed": 0}
    assert enqueued == [] and len(batch_requests(api)) == 2


def test_the_database_worker_runs_a_deferred_retry_when_it_is_due(
    api: StubServer, database_env: dict[str, str]
) -> None:
    """The production shape: a worker's task meets a long Retry-After and leaves a task row due
    later; the worker is free at once, and runs that row once it is due."""
    env = database_env
    django = [sys.executable, "-m", "django"]
    api.enqueue(_too_many_requests(3600))

    def run(script: str) -> str:
        done = subprocess.run([sys.executable, "-c", "import django; django.setup()\n" + script],
                              env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def work() -> None:
        worker = subprocess.run(
            [*django, "db_worker", "--batch", "--no-startup-delay", "--interval", "0.05"],
            env=env, capture_output=True, text=True, timeout=60,
        )
        assert worker.returncode == 0, worker.stderr

    run(textwrap.dedent("""
        from django_experience import delivery
        from tests.delivery.helpers import track
        delivery.enqueue(track("p1", n=1))
        assert delivery.flush(timeout=20)
    """))
    work()  # meets the 429: defers instead of waiting an hour
    assert len(batch_requests(api)) == 1
    due = run(textwrap.dedent("""
        from django.utils import timezone
        from django_tasks_db.models import DBTaskResult
        (row,) = DBTaskResult.objects.filter(status="READY")
        print(round((row.run_after - timezone.now()).total_seconds()), row.args_kwargs["kwargs"])
        DBTaskResult.objects.update(run_after=timezone.now())  # an hour later
    """))
    seconds, kwargs = due.split(" ", 1)
    assert 3500 < int(seconds) <= 3600 and kwargs.strip() == "{'retries': 1}"
    work()
    first, second = batch_requests(api)
    assert first.body == second.body
    assert [e["properties"]["n"] for e in sent_events(api)] == [1, 1]
