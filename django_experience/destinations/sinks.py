"""Delivery sinks for the configured destinations: background upserts to Experiture and Releva.

A job's payload is ``{"userId": ..., "traits": {...}}`` (JSON, so the ``tasks`` backend can store
it). The sink maps the traits with the destination's ``fields`` and upserts them. What happens to
each payload:

- sent: counted by delivery;
- refused before sending (``.local``: the record would fail the platform's validation) or
  refused by the platform for its content, auth or permissions: reported at once (logging, the
  ``EXPERIENCE_DELIVERY_ON_ERROR`` callback, the ``failed`` counter), never retried. Releva
  refuses a request of several profiles as a whole (400, 422): delivery splits those payloads
  until the bad one is alone, so only it is reported, with its own reason, and the others are
  stored;
- no answer, 429 or 5xx: retried by delivery with backoff (honouring ``Retry-After``), then
  reported like the others.

Destinations are built from ``EXPERIENCE_DESTINATIONS`` when a batch is sent (so a worker process
uses its own settings), once per configuration and process, with no retries of the clients' own:
delivery's retry policy is the only one.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from typing import Any

from django_experience.conf import conf
from django_experience.delivery.counters import counters
from django_experience.delivery.sender import report_failure
from django_experience.delivery.settings import delivery_settings
from django_experience.delivery.sinks import Payload, Sink, register_sink
from django_experience.destinations.configured import (
    Destination,
    Rejected,
    SendReport,
    build_destinations,
)
from django_experience.destinations.errors import DestinationError, InvalidRecord
from django_experience.errors_policy import refused_for_content

DESTINATION_NAMES = ("experiture", "releva")
EXPERITURE_BATCH = 50  # upserts per round: one request each, retried together after an outage


class NotConfigured(LookupError):
    """A job for a destination that ``EXPERIENCE_DESTINATIONS`` (no longer) names: final."""


class RefusedBeforeSending(InvalidRecord):
    """A payload the destination's validation refuses, so it was not sent.

    Its message is logged, so it names the field only: the validation's reason may quote the
    value, which is personal data. ``reason`` holds it, for the error callback.
    """

    def __init__(self, destination: str, rejected: Rejected) -> None:
        where = f"field {rejected.field!r}" if rejected.field else "the record"
        super().__init__(
            f"{destination} validation refuses {where}; not sent", field=rejected.field
        )
        self.reason = rejected.reason


def configured_options(name: str) -> dict[str, Any] | None:
    """The ``EXPERIENCE_DESTINATIONS`` entry for ``name``, or ``None`` when it is not there."""
    config = conf.DESTINATIONS or {}
    if not isinstance(config, Mapping):
        raise ValueError("EXPERIENCE_DESTINATIONS must be a dict")
    options = config.get(name)
    return dict(options) if isinstance(options, Mapping) else None


_lock = threading.Lock()
_built: dict[tuple[int, str, str], Destination] = {}


def delivery_destination(name: str, *, client_retries: bool = False) -> Destination:
    """The destination ``name`` for delivery, built once per configuration and process.

    In the background delivery retries, so the client does not (``client_retries=False``); the
    ``sync`` backend sends once, with the client's own retries, like the Experience API's.
    Raises :class:`NotConfigured`, or ``ValueError`` for a wrong configuration.
    """
    options = configured_options(name)
    if options is None:
        raise NotConfigured(f"EXPERIENCE_DESTINATIONS has no {name!r}: nothing to send it to")
    if not client_retries:
        options.setdefault("timeout", delivery_settings.TIMEOUT)
        options["max_retries"] = 0
    key = (os.getpid(), name, json.dumps(options, sort_keys=True, default=str))
    destination = _built.get(key)
    if destination is None:
        with _lock:
            destination = _built.get(key)
            if destination is None:
                destination = build_destinations({name: options})[name]
                _built[key] = destination
    return destination


def _traits(payload: Payload) -> Mapping[str, Any]:
    traits = payload.get("traits") if isinstance(payload, Mapping) else None
    return traits if isinstance(traits, Mapping) else {}


def _first_problem(report: SendReport) -> DestinationError | None:
    problems: list[tuple[int, DestinationError]] = [
        (item.index, RefusedBeforeSending(report.destination, item)) for item in report.rejected
    ]
    problems += [(item.index, item.error) for item in report.failed]
    return min(problems, key=lambda pair: pair[0])[1] if problems else None


class DestinationSink(Sink):
    """Upserts ``{"userId", "traits"}`` payloads to one configured destination."""

    def __init__(self, name: str) -> None:
        self.name = name

    def plan(self, payloads: list[Payload]) -> list[list[Payload]]:
        size = EXPERITURE_BATCH
        if self.name == "releva":
            options = configured_options("releva") or {}
            batch_size = options.get("batch_size", 100)
            size = batch_size if isinstance(batch_size, int) and batch_size > 0 else 100
        return [payloads[start:start + size] for start in range(0, len(payloads), size)]

    def send(self, batch: list[Payload]) -> None:
        """Send, report what is final, raise for what is worth retrying or splitting.

        Delivery retries this same list after the raised error, so it is cut down to the
        payloads still to send: those already accepted are counted as sent here and are not
        upserted twice; those refused are reported here, each with its own reason.

        A request of several profiles (Releva) refused for its content (400, 413, 422) says
        only that one of them is bad: those payloads are left in the list and the refusal is
        raised, so delivery splits them (:meth:`splittable`) until the bad one travels alone
        and is reported with its own reason, while the others are stored. After a retryable
        error too, they stay in the list, to be sent (and split) again with the retried ones.
        """
        destination = delivery_destination(self.name)
        report = destination.send([_traits(payload) for payload in batch])
        if report.ok:
            return
        for rejected in report.rejected:
            report_failure(
                self, [batch[rejected.index]], RefusedBeforeSending(self.name, rejected),
                "refused before sending",
            )
        retry: list[int] = []
        retry_error: DestinationError | None = None
        split: list[int] = []
        split_error: DestinationError | None = None
        refused: dict[int, tuple[DestinationError, list[int]]] = {}
        for failed in report.failed:
            if self.retry_delay(failed.error) is None:
                # One error per request: a refused request, or an auth failure that fails the
                # whole batch at once, is one group.
                refused.setdefault(id(failed.error), (failed.error, []))[1].append(failed.index)
            else:
                retry.append(failed.index)
                retry_error = retry_error or failed.error
        for error, indexes in refused.values():
            if destination.batched and len(indexes) > 1 and refused_for_content(error):
                split += indexes
                split_error = split_error or error
            else:
                report_failure(self, [batch[index] for index in indexes], error, "refused")
        counters.add("sent", len(report.sent))
        # Sent again in their order: two upserts of one person must arrive as queued.
        batch[:] = [batch[index] for index in sorted(retry + split)]
        if retry_error is not None:
            raise retry_error  # honours its Retry-After; the content refusal comes back later
        if split_error is not None:
            raise split_error

    def send_now(self, batch: list[Payload]) -> None:
        """The ``sync`` backend: raise the first problem; the caller reports it."""
        destination = delivery_destination(self.name, client_retries=True)
        report = destination.send([_traits(payload) for payload in batch])
        problem = _first_problem(report)
        if problem is not None:
            raise problem

    def retry_delay(self, exc: BaseException) -> float | None:
        if getattr(exc, "local", False):
            return None  # refused before sending: it would be refused again
        return super().retry_delay(exc)

    def splittable(self, exc: BaseException) -> bool:
        # :meth:`send` reports every refusal it can pin on a payload and raises only the
        # refusal of a request carrying several, which splitting narrows down.
        return refused_for_content(exc)


def register_sinks() -> None:
    """Make ``enqueue(payload, sink="experiture" | "releva")`` available in this process."""
    for name in DESTINATION_NAMES:
        register_sink(DestinationSink(name))


def _after_fork() -> None:
    global _lock
    _lock = threading.Lock()  # another thread of the parent may have held it


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


__all__ = [
    "DESTINATION_NAMES",
    "DestinationSink",
    "NotConfigured",
    "RefusedBeforeSending",
    "configured_options",
    "delivery_destination",
    "register_sinks",
]
