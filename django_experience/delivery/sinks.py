"""Where delivered payloads go. A job is (sink name, payload); a sink turns payloads into requests.

The Experience API batch endpoint is the built-in sink (``"experience"``). Other destinations
(customer-data platforms) register their own with :func:`register_sink`, so the queue, batching,
retries, counters and task backend serve them unchanged.
"""

from __future__ import annotations

from typing import Any

from django_experience import errors_policy
from django_experience.api import ExperienceClient
from django_experience.api.batching import plan_batches
from django_experience.clients import cached_client, experience_client
from django_experience.delivery.settings import delivery_settings

Payload = dict[str, Any]


class Sink:
    """Base sink. Subclasses set ``name`` and implement :meth:`send`.

    Errors are judged by their ``status`` attribute (``None`` meaning no answer arrived), the
    convention of every client in this package; override the hooks for anything else.
    """

    name: str = ""

    def plan(self, payloads: list[Payload]) -> list[list[Payload]]:
        """Split payloads into request-sized batches (order kept)."""
        return [payloads] if payloads else []

    def send(self, batch: list[Payload]) -> None:
        """Send one batch from the background; raise on failure."""
        raise NotImplementedError

    def send_now(self, batch: list[Payload]) -> None:
        """Send one batch in the caller's thread (the ``sync`` backend)."""
        self.send(batch)

    def retry_delay(self, exc: BaseException) -> float | None:
        """``None`` when ``exc`` is final; else the minimum wait before retrying (0 = backoff)."""
        return errors_policy.retry_delay(exc)

    def splittable(self, exc: BaseException) -> bool:
        """True when a batch is refused for its content (one bad payload spoils it)."""
        return errors_policy.refused_for_content(exc)


def delivery_client() -> ExperienceClient:
    """A client for background sends: its own timeout, no retries of its own (delivery retries)."""
    return cached_client(timeout=delivery_settings.TIMEOUT, max_retries=0)


class ExperienceSink(Sink):
    """Events for the Experience API's batch endpoint (``POST .../events``)."""

    name = "experience"

    def plan(self, payloads: list[Payload]) -> list[list[Payload]]:
        return plan_batches(payloads)

    def send(self, batch: list[Payload]) -> None:
        delivery_client().upsert_profiles(batch)

    def send_now(self, batch: list[Payload]) -> None:
        experience_client().upsert_profiles(batch)


_sinks: dict[str, Sink] = {}


def register_sink(sink: Sink) -> None:
    """Make ``sink`` available under ``sink.name`` (replacing a sink of the same name)."""
    if not sink.name:
        raise ValueError("A delivery sink needs a name")
    _sinks[sink.name] = sink


def get_sink(name: str) -> Sink:
    try:
        return _sinks[name]
    except KeyError:
        raise LookupError(
            f"No delivery sink named {name!r}; registered: {', '.join(sorted(_sinks))}"
        ) from None


def sink_names() -> list[str]:
    return sorted(_sinks)


register_sink(ExperienceSink())
