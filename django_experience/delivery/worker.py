"""The in-process queue and its consumer thread (backends ``thread`` and ``tasks``).

``enqueue`` only appends to a bounded deque under a lock: it never blocks on the network and
never waits for room (a full queue drops by policy). One daemon thread per process takes jobs in
rounds: it waits for up to ``FLUSH_INTERVAL`` after the first job of a round, or until
``BATCH_SIZE`` jobs are there, or a flush is asked for, then hands the round to a dispatcher
(send now with retries, or one Django Task per batch).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple

from django_experience.delivery.counters import counters
from django_experience.delivery.sender import DeliveryStopped, deliver, report_failure
from django_experience.delivery.settings import delivery_settings
from django_experience.delivery.sinks import Payload, get_sink

logger = logging.getLogger("django_experience.delivery")


class Job(NamedTuple):
    sink: str
    payload: Payload


Dispatcher = Callable[[str, list[Payload], Callable[[float], bool]], None]
RoundHook = Callable[[], None]


def group_by_sink(jobs: list[Job]) -> dict[str, list[Payload]]:
    """Payloads per sink, each list in enqueue order."""
    groups: dict[str, list[Payload]] = {}
    for job in jobs:
        groups.setdefault(job.sink, []).append(job.payload)
    return groups


def send_dispatcher(sink_name: str, payloads: list[Payload], wait: Callable[[float], bool]) -> None:
    deliver(get_sink(sink_name), payloads, wait=wait)


class QueueWorker:
    """A bounded queue plus the thread that empties it. One per process and backend."""

    def __init__(
        self,
        dispatch: Dispatcher,
        name: str = "experience-delivery",
        around_round: RoundHook | None = None,
    ) -> None:
        """``around_round`` is called by the consumer thread before and after each round (and
        never in another thread), e.g. to close its database connections."""
        self._dispatch = dispatch
        self._name = name
        self._around_round = around_round
        self._jobs: deque[Job] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._pending = 0  # queued + in flight
        self._flush_requested = False
        self._stopping = False
        self._deadline: float | None = None  # set while flushing at exit
        self._out_of_time = False  # the exit flush's deadline has passed: start nothing more
        self._thread: threading.Thread | None = None

    # producer side ---------------------------------------------------------------------------
    def put(self, job: Job) -> None:
        """Queue ``job``; when full, drop the oldest or this one by policy. Never blocks."""
        self.put_many([job])

    def put_many(self, jobs: list[Job]) -> None:
        """Queue ``jobs`` in order under one lock; when full, the policy drops the oldest queued
        or the newest arriving ones. Never blocks."""
        maxsize, policy = delivery_settings.QUEUE_SIZE, delivery_settings.DROP
        batch_size = delivery_settings.BATCH_SIZE
        dropped = queued = 0
        with self._cond:
            queue = self._jobs
            was_empty = not queue
            for job in jobs:
                if len(queue) >= maxsize:
                    if policy == "newest":
                        dropped += 1
                        continue
                    while len(queue) >= maxsize:
                        queue.popleft()
                        self._pending -= 1
                        dropped += 1
                queue.append(job)
                self._pending += 1
                queued += 1
            counters.add("queued", queued)
            # Wake the consumer only when it has something to do: a first job to wait a round
            # for, or a full batch. Waking it for every event costs the request thread a switch.
            if queued and (was_empty or len(queue) >= batch_size):
                self._cond.notify_all()
            self._ensure_thread()
        if dropped:
            counters.add("dropped", dropped)
            logger.warning(
                "Delivery queue full (%d): dropped %d %s event(s)", maxsize, dropped, policy
            )

    def flush(self, timeout: float | None = None) -> bool:
        """Send everything queued now; True when the queue drained within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            if not self._pending:
                return True
            self._flush_requested = True
            self._cond.notify_all()
            if not self._ensure_thread():
                return self._drain_here(deadline)
            while self._pending:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def pending(self) -> int:
        with self._cond:
            return self._pending

    def set_deadline(self, deadline: float) -> None:
        """No retry waits past ``deadline`` (a ``time.monotonic()`` value); one begun ends now
        if it would."""
        with self._cond:
            self._deadline = deadline if self._deadline is None else min(self._deadline, deadline)
            self._cond.notify_all()

    def shutdown(self, timeout: float) -> bool:
        """Flush within ``timeout`` seconds, then stop the thread; True when all was sent.

        No request starts after the deadline and no retry waits past it. When it runs out,
        every event not sent is given up on (counted ``failed``, handed to
        ``EXPERIENCE_DELIVERY_ON_ERROR``) exactly once: the queued ones here, the round in flight
        by the consumer, which is waited for while its request ends (at most
        ``EXPERIENCE_DELIVERY_TIMEOUT`` more).
        """
        self.set_deadline(time.monotonic() + timeout)
        drained = self.flush(timeout)
        with self._cond:
            drained = drained or not self._pending  # the last round may have ended since
            self._stopping = True
            left: list[Job] = []
            if not drained:
                self._out_of_time = True
                left = list(self._jobs)  # taken here under the lock: the consumer cannot
                self._jobs.clear()
            self._cond.notify_all()
            thread = self._thread
        if drained:
            return True
        try:
            self._report_unsent(left)
        finally:
            self._finish(len(left))
        if thread is not None and thread is not threading.current_thread():
            thread.join(delivery_settings.TIMEOUT)
        unknown = self.pending()
        if unknown:
            logger.error(
                "Delivery stopped with %d event(s) in flight: their request had not ended",
                unknown,
            )
        return False

    def _report_unsent(self, jobs: list[Job]) -> None:
        """Give up on ``jobs`` that never left the queue (delivery stopped first)."""
        for sink_name, payloads in group_by_sink(jobs).items():
            exc = DeliveryStopped("delivery stopped with these events still queued")
            try:
                report_failure(get_sink(sink_name), payloads, exc, "out of time: not sent")
            except Exception:
                counters.add("failed", len(payloads))
                logger.exception("Delivery to %s gave up on %d event(s)", sink_name, len(payloads))

    def discard(self, timeout: float | None = None) -> None:
        """Forget queued jobs; stop the thread after its current round and wait for it to end
        (up to ``timeout`` seconds). For tests."""
        with self._cond:
            self._pending -= len(self._jobs)
            self._jobs.clear()
            self._stopping = True
            self._deadline = time.monotonic()
            self._cond.notify_all()
            thread = self._thread
        # A round already being sent ends with its request in flight (no retries and no new
        # request now: the rest is given up on): wait for it, so none of its requests lands
        # after the caller has moved on.
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    # consumer side ---------------------------------------------------------------------------
    def _ensure_thread(self) -> bool:
        """Start the consumer when it is not running (called with the lock held)."""
        if self._thread is not None and self._thread.is_alive():
            return True
        if self._stopping:
            return False
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # interpreter shutting down: no new threads
            return False
        self._thread = thread
        return True

    def _take_round(self) -> list[Job] | None:
        """Block until a round of jobs is ready; None when stopping with nothing left."""
        batch_size = delivery_settings.BATCH_SIZE
        with self._cond:
            while not self._jobs:
                if self._stopping:
                    return None
                self._cond.wait()
            round_ends = time.monotonic() + delivery_settings.FLUSH_INTERVAL
            while len(self._jobs) < batch_size and not self._flush_requested and not self._stopping:
                remaining = round_ends - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            count = min(batch_size, len(self._jobs))
            return [self._jobs.popleft() for _ in range(count)]

    def _finish(self, count: int) -> None:
        with self._cond:
            self._pending -= count
            if not self._pending:
                self._flush_requested = False
            self._cond.notify_all()

    def _run(self) -> None:
        while True:
            jobs = self._take_round()
            if jobs is None:
                return
            try:
                self._call_around_round()
                self._dispatch_round(jobs)
            finally:
                self._call_around_round()
                self._finish(len(jobs))

    def _call_around_round(self) -> None:
        if self._around_round is not None:
            try:
                self._around_round()
            except Exception:  # must not kill the thread or lose the round
                logger.exception("Delivery: the hook around a round raised")

    def _dispatch_round(self, jobs: list[Job]) -> None:
        for sink_name, payloads in group_by_sink(jobs).items():
            try:
                self._dispatch(sink_name, payloads, self._wait)
            except Exception:  # a dispatcher bug must not kill the thread
                counters.add("failed", len(payloads))
                logger.exception("Delivery to %s failed unexpectedly", sink_name)

    def _wait(self, seconds: float) -> bool:
        """The dispatcher's :data:`~django_experience.delivery.sender.Waiter`: False at once
        when the wait would end past the deadline or delivery is out of time (a wait already
        begun ends when :meth:`shutdown` sets either)."""
        ends = time.monotonic() + seconds
        with self._cond:
            while True:
                if self._out_of_time or (self._deadline is not None and ends > self._deadline):
                    return False
                remaining = ends - time.monotonic()
                if remaining <= 0:
                    return True
                self._cond.wait(remaining)

    def _drain_here(self, deadline: float | None) -> bool:
        """Send in the calling thread (no thread can be started); called with the lock held."""
        jobs = list(self._jobs)
        self._jobs.clear()
        self._cond.release()
        try:
            if deadline is not None and self._deadline is None:
                self._deadline = deadline
            self._dispatch_round(jobs)
        finally:
            self._cond.acquire()
            self._pending -= len(jobs)
        return not self._pending
