"""Background delivery of events that need no answer.

Page views nobody waited for, component views, ``request.experience.track(...)`` and events sent
from code go through :func:`enqueue` (or :func:`send`), which never blocks and never raises.
``EXPERIENCE_DELIVERY`` picks the backend: ``thread`` (default; an in-process queue and a consumer
thread), ``tasks`` (one Django Task per batch) or ``sync`` (sent at once, for tests and scripts).

The queue is per process: it is flushed at interpreter exit (within
``EXPERIENCE_DELIVERY_EXIT_TIMEOUT``) and started afresh in a forked child, whose copy of the
parent's queue is discarded (the parent sends those events).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from typing import Any

from django_experience.delivery.counters import counters as _counters
from django_experience.delivery.sender import DeliveryStopped
from django_experience.delivery.settings import delivery_settings
from django_experience.delivery.sinks import Payload, Sink, get_sink, register_sink
from django_experience.delivery.worker import Job, QueueWorker

logger = logging.getLogger("django_experience.delivery")

__all__ = [
    "DeliveryStopped",
    "Sink",
    "counters",
    "enqueue",
    "enqueue_many",
    "flush",
    "register_sink",
    "reset",
    "send",
    "shutdown",
]

_lock = threading.Lock()
_workers: dict[str, QueueWorker] = {}
_pid = os.getpid()
_atexit_registered = False


def _worker(backend: str) -> QueueWorker:
    """This process's queue for ``backend`` (``thread`` or ``tasks``), created on first use."""
    global _atexit_registered
    if os.getpid() != _pid:
        _after_fork()
    worker = _workers.get(backend)
    if worker is None:
        with _lock:
            worker = _workers.get(backend)
            if worker is None:
                if backend == "tasks":
                    from django_experience.delivery.tasks import (
                        close_old_connections,
                        task_dispatcher,
                    )

                    worker = QueueWorker(
                        task_dispatcher,
                        name="experience-delivery-tasks",
                        around_round=close_old_connections,
                    )
                else:
                    from django_experience.delivery.worker import send_dispatcher

                    worker = QueueWorker(send_dispatcher)
                _workers[backend] = worker
                if not _atexit_registered:
                    atexit.register(_flush_at_exit)
                    _atexit_registered = True
    return worker


def _validate(sink: Sink, event: Any) -> str | None:
    if not isinstance(event, dict):
        return f"an event must be a dict, not {type(event).__name__}"
    if sink.name == "experience":
        anonymous_id = event.get("anonymousId")
        if not isinstance(anonymous_id, str) or not anonymous_id:
            return "the event has no anonymousId (use send(profile_id, event))"
        if not isinstance(event.get("type"), str):
            return "the event has no type"
    return None


def enqueue(event: Payload, *, sink: str = "experience") -> None:
    """Hand ``event`` to background delivery. Never blocks, never raises.

    For the Experience API the event is a batch-endpoint event carrying its ``anonymousId``.
    ``sink`` names another registered destination; its payloads go through the same queue.
    """
    enqueue_many([event], sink=sink)


def enqueue_many(events: list[Payload], *, sink: str = "experience") -> None:
    """:func:`enqueue` each of ``events`` in order, taking the queue's lock once (the events
    of one request). Never blocks, never raises; an invalid event is refused alone."""
    try:
        target = get_sink(sink)
        valid = []
        for event in events:
            problem = _validate(target, event)
            if problem:
                _counters.add("failed")
                logger.error("Delivery refused an event for %s: %s", sink, problem)
            else:
                valid.append(event)
        if not valid:
            return
        backend = delivery_settings.BACKEND
        if backend == "sync":
            from django_experience.delivery.sync import send_now

            for event in valid:
                send_now(sink, event)
        else:
            _worker("tasks" if backend == "tasks" else "thread").put_many(
                [Job(sink, event) for event in valid]
            )
    except Exception:
        _counters.add("failed", len(events))
        logger.exception("Delivery could not accept %d event(s) for %s", len(events), sink)


def send(profile_id: str, event: Payload) -> None:
    """Send ``event`` for profile ``profile_id`` in the background (see :func:`enqueue`).

    For webhooks and jobs that know the profile but have no request, e.g.
    ``send(mapping.profile_id, track_event("Order shipped"))``.
    """
    if isinstance(event, dict):
        event = {**event, "anonymousId": profile_id}
    enqueue(event)


def flush(timeout: float | None = None) -> bool:
    """Send everything queued in this process now; True when all was handled within ``timeout``.

    "Handled" means sent or given up on (see :func:`counters`). With ``tasks``, it means
    enqueued as tasks. Returns True at once with the ``sync`` backend.
    """
    if os.getpid() != _pid:
        _after_fork()
    workers = list(_workers.values())
    if timeout is None:
        return all([worker.flush() for worker in workers])

    deadline = time.monotonic() + timeout
    return all([worker.flush(max(0.0, deadline - time.monotonic())) for worker in workers])


def counters() -> dict[str, int]:
    """``{"queued", "sent", "retried", "dropped", "failed"}`` counts of this process."""
    return _counters.snapshot()


def shutdown(timeout: float | None = None) -> bool:
    """Flush (bounded by ``timeout``, default ``EXPERIENCE_DELIVERY_EXIT_TIMEOUT``) and stop."""
    budget = delivery_settings.EXIT_TIMEOUT if timeout is None else timeout
    deadline = time.monotonic() + budget
    with _lock:
        workers = list(_workers.values())
        _workers.clear()
    for worker in workers:  # one deadline for all: each backend's thread flushes meanwhile
        worker.set_deadline(deadline)
    return all([worker.shutdown(max(0.0, deadline - time.monotonic())) for worker in workers])


def reset() -> None:
    """Forget queued events and zero the counters (for tests).

    Waits for a send already in flight to end (within ``EXPERIENCE_DELIVERY_TIMEOUT``), so
    nothing of one test reaches the API after the next one has started.
    """
    with _lock:
        workers = list(_workers.values())
        _workers.clear()
    for worker in workers:
        worker.discard(timeout=delivery_settings.TIMEOUT)
    _counters.reset()


_exit_deadline: float | None = None


def exit_seconds_left() -> float:
    """What is left of the exit's one budget, ``EXPERIENCE_DELIVERY_EXIT_TIMEOUT`` from the
    first call on: the exit handlers (delivery's flush, the background deletions) share it, so
    a process never takes longer to exit than the setting says."""
    global _exit_deadline
    if _exit_deadline is None:
        _exit_deadline = time.monotonic() + delivery_settings.EXIT_TIMEOUT
    return max(0.0, _exit_deadline - time.monotonic())


def _flush_at_exit() -> None:
    try:
        if os.getpid() == _pid and _workers:
            shutdown(exit_seconds_left())
    except Exception:  # never turn an exit into a traceback
        logger.exception("Delivery could not flush at exit")


def _after_fork() -> None:
    """In a forked child: drop the parent's queue and threads; a fresh queue starts on use."""
    global _pid, _lock
    _pid = os.getpid()
    _lock = threading.Lock()
    _workers.clear()
    _counters.after_fork()
    _counters.reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)
