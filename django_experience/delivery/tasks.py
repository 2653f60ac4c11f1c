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
from typing import Any

from django_experience.api.batching import EncodedBatch
from django_experience.api.encoding import encode_events
from django_experience.api.errors import InvalidData
from django_experience.conf import TASK_MODULES
from django_experience.delivery.sender import (
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


@_task
def deliver_batch(sink_name: str, events: list[Any]) -> dict[str, int]:
    """Task body: send one batch with retries; returns how many were sent and failed.

    ``events`` is what the ``tasks`` backend enqueues: one request-sized batch, each event as
    its JSON text (a ``str``, encoded as the API receives it: dates and UUIDs as ISO strings).
    That text is sent as it is, not encoded again. A list of event dicts is accepted too (the
    form of earlier versions, for tasks enqueued before an upgrade); those are encoded and split
    into requests here.
    """
    sink = get_sink(sink_name)
    if events and all(isinstance(event, str) for event in events):
        sent = send_batch(sink, _decoded(sink, events))
    else:
        sent = deliver(sink, events)
    return {"sent": sent, "failed": len(events) - sent}


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
                deliver_batch.using(
                    queue_name=delivery_settings.TASK_QUEUE,
                    backend=delivery_settings.TASK_BACKEND,
                ).enqueue(sink_name, texts)
            except Exception as exc:
                report_failure(sink, events, exc, "could not be enqueued as a task")
