"""Send payloads through a sink: API-sized batches, retries with backoff, failure reports."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable

from django_experience.api.batching import EncodedBatch, byte_cuts, split_encoded
from django_experience.delivery.counters import counters
from django_experience.delivery.settings import delivery_settings
from django_experience.delivery.sinks import Payload, Sink

logger = logging.getLogger("django_experience.delivery")

Waiter = Callable[[float], bool]
"""``wait(seconds) -> bool``: sleeps, returning False when delivery must stop waiting now.

``wait(0)`` asks, before a request is sent, whether delivery may still start one: False once
its time is out (the exit flush's deadline has passed), and the batch is then reported unsent.
"""


Deferrer = Callable[[list[Payload], float, int], bool]
"""``defer(batch, seconds, retries) -> bool``: hands ``batch`` over to be sent again in
``seconds``, as its retry number ``retries``, instead of waiting here; False when it cannot
(the batch is then waited for here, as without one)."""


class DeliveryStopped(TimeoutError):
    """Handed to ``EXPERIENCE_DELIVERY_ON_ERROR`` with events never sent because delivery
    stopped first: its time ran out (``EXPERIENCE_DELIVERY_EXIT_TIMEOUT`` at exit)."""


def _sleep(seconds: float) -> bool:
    if seconds > 0:
        time.sleep(seconds)
    return True


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
_ENVELOPE = 16  # the {"events":[]} envelope, generously


def payload_size(payload: Payload | list[Payload]) -> int:
    """Bytes of ``payload`` (or a list of them) as JSON (an upper bound: non-ASCII is counted
    escaped)."""
    return len(_ENCODER.encode(payload))


def split_by_bytes(batch: list[Payload], max_bytes: int) -> list[list[Payload]]:
    """Split ``batch`` (order kept) so each part's JSON stays under ``max_bytes``.

    An :class:`EncodedBatch` is sized by its encoded events, exactly, and split into encoded
    batches; other batches by an estimate of their JSON. A single payload larger than the limit
    travels alone; the API decides about it.
    """
    if isinstance(batch, EncodedBatch) and batch.intact():
        return list(split_encoded(batch, max_bytes))
    if payload_size(batch) + _ENVELOPE <= max_bytes:
        return [batch]  # the usual case: one encoding of the whole batch, not one per payload
    sizes = [payload_size(payload) + 1 for payload in batch]
    return [batch[start:end] for start, end in byte_cuts(sizes, _ENVELOPE, max_bytes)]


def backoff_delay(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter between half and the whole step."""
    step = min(cap, base * (2 ** (attempt - 1)))
    return float(step / 2 + random.random() * step / 2)


def report_failure(sink: Sink, batch: list[Payload], exc: BaseException, reason: str) -> None:
    """Count, log and hand a given-up batch to the ``EXPERIENCE_DELIVERY_ON_ERROR`` callback."""
    counters.add("failed", len(batch))
    logger.error(
        "Delivery to %s gave up on %d event(s) (%s): %s", sink.name, len(batch), reason, exc
    )
    try:
        callback = delivery_settings.ON_ERROR
        if callback is not None:
            callback(exc, batch, sink.name)
    except Exception:
        logger.exception("EXPERIENCE_DELIVERY_ON_ERROR raised")


def deliver(
    sink: Sink, payloads: list[Payload], *, wait: Waiter = _sleep, defer: Deferrer | None = None
) -> int:
    """Send ``payloads`` through ``sink``; returns how many were sent. Never raises."""
    try:
        batches = [
            part
            for planned in sink.plan(payloads)
            for part in split_by_bytes(planned, delivery_settings.MAX_BATCH_BYTES)
        ]
    except Exception as exc:
        report_failure(sink, payloads, exc, "could not be batched")
        return 0
    return sum(send_batch(sink, batch, wait=wait, defer=defer) for batch in batches)


def send_batch(
    sink: Sink,
    batch: list[Payload],
    *,
    wait: Waiter = _sleep,
    defer: Deferrer | None = None,
    retries: int = 0,
) -> int:
    """Send one request-sized batch with retries; returns how many payloads were sent.

    ``retries``: how many times the batch was retried already (a deferred batch's task).
    ``defer`` is offered each retry before it is waited for; a batch it takes is not sent here.
    """
    if not wait(0):
        stopped = DeliveryStopped("delivery stopped before these events were sent")
        report_failure(sink, batch, stopped, "out of time: not sent")
        return 0
    max_retries = delivery_settings.MAX_RETRIES
    base, cap = delivery_settings.BACKOFF, delivery_settings.BACKOFF_MAX
    attempt = retries
    while True:
        try:
            sink.send(batch)
        except Exception as exc:
            minimum = sink.retry_delay(exc)
            if minimum is None:
                if sink.splittable(exc) and len(batch) > 1:
                    # One bad payload (or one gone profile) must not take the others down:
                    # split (bisect, or by profile) to isolate it.
                    parts = [part for part in sink.split(batch, exc) if part]
                    if len(parts) > 1 and all(len(part) < len(batch) for part in parts):
                        return sum(
                            send_batch(sink, part, wait=wait, defer=defer) for part in parts
                        )
                report_failure(sink, batch, exc, sink.refusal_reason(batch, exc))
                return 0
            if attempt >= max_retries:
                report_failure(sink, batch, exc, f"still failing after {attempt} retries")
                return 0
            attempt += 1
            delay = max(minimum, backoff_delay(attempt, base, cap))
            deferred = defer is not None and defer(batch, delay, attempt)
            logger.info(
                "Delivery to %s: retry %d of %d event(s) in %.2fs%s after %s",
                sink.name,
                attempt,
                len(batch),
                delay,
                " (deferred)" if deferred else "",
                exc,
            )
            if deferred:
                return 0
            if not wait(delay):
                report_failure(sink, batch, exc, "out of time while retrying")
                return 0
            counters.add("retried", len(batch))
        else:
            counters.add("sent", len(batch))
            return len(batch)
