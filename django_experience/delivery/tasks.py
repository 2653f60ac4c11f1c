"""The ``tasks`` backend: one Django Task per batch, run by whatever task backend the site uses.

``django.tasks`` on Django 6, the ``django-tasks`` backport before it. The in-process queue
still collects events into batches and splits them into API-sized requests; each task carries
(sink name, the request's events each as its JSON text), so database, Celery or RQ task backends
can store it, and the worker sends those bytes as they are (see :func:`deliver_batch`).
"""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django_experience.api.batching import EncodedBatch
from django_experience.api.encoding import encode_events
from django_experience.api.errors import InvalidData
from django_experience.conf import TASK_MODULES
from django_experience.delivery.sender import (
    Deferrer,
    DeliveryStopped,
    deliver,
    report_failure,
    send_batch,
    split_by_bytes,
)
from django_experience.delivery.settings import delivery_settings
from django_experience.delivery.sinks import Payload, Sink, get_sink


def _task_module() -> Any:
    """``django.tasks`` on Django 6+, else the ``django_tasks`` backport."""
    for name in TASK_MODULES[:-1]:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return importlib.import_module(TASK_MODULES[-1])  # its ImportError says what is missing


logger = logging.getLogger("django_experience.delivery")


# A worker imports the task by the module path of its function, so the module-level name
# ``deliver_batch`` must be the Task itself.
_task: Callable[[Callable[..., Any]], Any] = _task_module().task()


LONGEST_WAIT_IN_TASK = 5.0
"""Seconds a task waits for a retry itself; a longer wait (a ``Retry-After``, the later
backoff steps) becomes a new task run that much later, when the task backend can defer tasks,
so that the worker is free meanwhile for the site's other tasks."""


@_task
def deliver_batch(sink_name: str, events: list[Any], retries: int = 0) -> dict[str, int]:
    """Task body: send one batch with retries; returns how many were sent, deferred (to a
    task run later) and failed.

    ``events`` is what the ``tasks`` backend enqueues: one request-sized batch, each event as
    its JSON text (a ``str``, encoded as the API receives it: dates and UUIDs as ISO strings).
    That text is sent as it is, not encoded again. A list of event dicts is accepted too (the
    form of earlier versions, for tasks enqueued before an upgrade); those are encoded and split
    into requests here. ``retries``: how many times the batch was retried before this run.
    """
    sink = get_sink(sink_name)
    deferred: list[int] = []
    defer = _deferrer(sink, deferred)
    if events and all(isinstance(event, str) for event in events):
        sent = send_batch(sink, _decoded(sink, events), defer=defer, retries=retries)
    else:
        sent = deliver(sink, events, defer=defer)
    later = sum(deferred)
    return {"sent": sent, "deferred": later, "failed": len(events) - sent - later}


def _deferrer(sink: Sink, deferred: list[int]) -> Deferrer | None:
    """Defers a retry longer than :data:`LONGEST_WAIT_IN_TASK` to a new task run that much
    later (counting its events in ``deferred``); None when the backend cannot defer."""
    task = _task_for_delivery()
    try:
        if not task.get_backend().supports_defer:
            return None
    except Exception:  # a backend that cannot be loaded: the enqueue reported it already
        return None

    def defer(batch: list[Payload], seconds: float, retries: int) -> bool:
        if seconds <= LONGEST_WAIT_IN_TASK:
            return False
        from django.utils import timezone

        events, texts = _encoded_for_task(sink, batch)
        try:
            task.using(run_after=timezone.now() + timedelta(seconds=seconds)).enqueue(
                sink.name, texts, retries=retries
            )
        except Exception:
            logger.exception("Delivery to %s: a retry could not be deferred; waiting", sink.name)
            return False
        deferred.append(len(events))
        # Events that cannot be encoded were reported by _encoded_for_task, as failed.
        return True

    return defer


def _task_for_delivery() -> Any:
    """``deliver_batch`` on the configured queue and task backend."""
    return deliver_batch.using(
        queue_name=delivery_settings.TASK_QUEUE, backend=delivery_settings.TASK_BACKEND
    )


def _decoded(sink: Sink, texts: list[str]) -> EncodedBatch:
    """The events of ``texts`` with their encoding kept; a text that is not JSON is reported
    alone."""
    payloads: list[Payload] = []
    parts: list[bytes] = []
    for text in texts:
        try:
            payload, part = json.loads(text), text.encode("utf-8")
        except ValueError as exc:  # not JSON, or a lone surrogate (UnicodeEncodeError)
            unreadable: list[Any] = [text]  # handed on as the task carried it
            report_failure(sink, unreadable, exc, "refused: not an event's JSON text")
        else:
            payloads.append(payload)
            parts.append(part)
    return EncodedBatch(payloads, parts)


def _encoded_for_task(sink: Sink, batch: list[Payload]) -> tuple[list[Payload], list[str]]:
    """``batch``'s events that can be sent as JSON, and their JSON text (each event encoded
    once: an :class:`EncodedBatch` already is). An event that cannot is reported alone, so it
    does not take the rest of its batch down."""
    try:
        if isinstance(batch, EncodedBatch) and batch.intact():
            parts = batch.parts
        else:
            parts = encode_events(batch)
        return list(batch), [part.decode("utf-8") for part in parts]
    except InvalidData:
        pass
    payloads: list[Payload] = []
    texts: list[str] = []
    for payload in batch:
        try:
            [part] = encode_events([payload])
        except InvalidData as exc:
            report_failure(sink, [payload], exc, "refused: cannot be sent as JSON")
        else:
            payloads.append(payload)
            texts.append(part.decode("utf-8"))
    return payloads, texts


def close_old_connections() -> None:
    """Called by the consumer thread before and after each round.

    Enqueueing with a database task backend opens an ORM connection in that thread, and no
    request ever ends there to close it: as Django does at the start and end of a request,
    connections that are unusable or past ``CONN_MAX_AGE`` (by default: all of them) are
    closed, so a connection the database dropped is not used for every later round.
    """
    from django.db import close_old_connections

    close_old_connections()


def task_dispatcher(sink_name: str, payloads: list[Payload], wait: Callable[[float], bool]) -> None:
    """Enqueue one task per request-sized batch, its events as JSON text."""
    sink = get_sink(sink_name)
    for planned in sink.plan(payloads):
        for batch in split_by_bytes(planned, delivery_settings.MAX_BATCH_BYTES):
            events, texts = _encoded_for_task(sink, batch)
            if not texts:
                continue
            if not wait(0):  # the exit flush is out of time
                stopped = DeliveryStopped("delivery stopped before these events were enqueued")
                report_failure(sink, events, stopped, "out of time: not enqueued")
                continue
            try:
                _task_for_delivery().enqueue(sink_name, texts)
            except Exception as exc:
                report_failure(sink, events, exc, "could not be enqueued as a task")
