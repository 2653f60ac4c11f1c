"""The ``tasks`` backend: one Django Task per batch, run by whatever task backend the site uses.

``django.tasks`` on Django 6, the ``django-tasks`` backport before it. The in-process queue
still collects events into batches; the task only carries (sink name, payloads), which are JSON,
so database, Celery or RQ task backends can store it.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from django_experience.conf import TASK_MODULES
from django_experience.delivery.sender import deliver, report_failure, split_by_bytes
from django_experience.delivery.settings import delivery_settings
from django_experience.delivery.sinks import Payload, get_sink


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
def deliver_batch(sink_name: str, payloads: list[Payload]) -> dict[str, int]:
    """Task body: send one batch with retries; returns how many were sent and failed."""
    sent = deliver(get_sink(sink_name), payloads)
    return {"sent": sent, "failed": len(payloads) - sent}


def task_dispatcher(sink_name: str, payloads: list[Payload], wait: Callable[[float], bool]) -> None:
    """Enqueue one task per request-sized batch."""
    sink = get_sink(sink_name)
    for planned in sink.plan(payloads):
        for batch in split_by_bytes(planned, delivery_settings.MAX_BATCH_BYTES):
            try:
                deliver_batch.using(
                    queue_name=delivery_settings.TASK_QUEUE,
                    backend=delivery_settings.TASK_BACKEND,
                ).enqueue(sink_name, batch)
            except Exception as exc:
                report_failure(sink, batch, exc, "could not be enqueued as a task")
