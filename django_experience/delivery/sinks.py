"""Where delivered payloads go. A job is (sink name, payload); a sink turns payloads into requests.

The Experience API batch endpoint is the built-in sink (``"experience"``). Other destinations
(customer-data platforms) register their own with :func:`register_sink`, so the queue, batching,
retries, counters and task backend serve them unchanged.
"""

from __future__ import annotations

from typing import Any

from django_experience import errors_policy
from django_experience.api import ExperienceClient
from django_experience.api.batching import EncodedBatch, plan_batches
from django_experience.api.errors import InvalidData, NamespaceMismatch
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

    def split(self, batch: list[Payload], exc: BaseException) -> list[list[Payload]]:
        """The parts to send on their own after ``exc`` (:meth:`splittable`) refused ``batch``.

        Called for batches of more than one payload; returning one part (or parts no smaller
        than the batch) means the batch cannot be split and is refused as a whole.
        """
        middle = len(batch) // 2
        return [batch[:middle], batch[middle:]]

    def refusal_reason(self, batch: list[Payload], exc: BaseException) -> str:
        """Why ``batch`` is given up on after the final error ``exc`` (for the log)."""
        return "refused"


def _encoded(batch: list[Payload]) -> list[Payload]:
    try:
        return EncodedBatch.of(batch)
    except InvalidData:  # an event is not JSON: the client refuses the batch, delivery splits it
        return batch


def delivery_client() -> ExperienceClient:
    """A client for background sends: its own timeout, no retries of its own (delivery retries)."""
    return cached_client(timeout=delivery_settings.TIMEOUT, max_retries=0)


class ExperienceSink(Sink):
    """Events for the Experience API's batch endpoint (``POST .../events``)."""

    name = "experience"

    def plan(self, payloads: list[Payload]) -> list[list[Payload]]:
        return [_encoded(batch) for batch in plan_batches(payloads)]

    def send(self, batch: list[Payload]) -> None:
        # The answer's profiles are of no use here.
        if isinstance(batch, EncodedBatch) and batch.intact():
            delivery_client().send_encoded_events(batch.parts)
        else:
            delivery_client().send_events(batch)

    def send_now(self, batch: list[Payload]) -> None:
        experience_client().send_events(batch)

    def retry_delay(self, exc: BaseException) -> float | None:
        # Not the API's answer (a gateway during a deploy, a proxy): like no answer at all, it
        # says nothing about the events, so they are sent again with backoff, not given up.
        if errors_policy.unrouted(exc):
            return 0.0
        return super().retry_delay(exc)

    def splittable(self, exc: BaseException) -> bool:
        # One deleted, merged-away or foreign profile makes the API refuse the whole batch:
        # isolate its events so those of every other profile are still sent.
        return super().splittable(exc) or errors_policy.profile_gone(exc)

    def split(self, batch: list[Payload], exc: BaseException) -> list[list[Payload]]:
        if errors_policy.profile_gone(exc):
            return split_by_profile(batch, str(getattr(exc, "message", "") or exc))
        return super().split(batch, exc)

    def refusal_reason(self, batch: list[Payload], exc: BaseException) -> str:
        if not errors_policy.profile_gone(exc):
            return super().refusal_reason(batch, exc)
        profiles = _profile_ids(batch)
        who = f"profile {profiles[0]}" if len(profiles) == 1 else "a profile of the batch"
        code = getattr(exc, "code", None)
        if isinstance(exc, NamespaceMismatch) or code == "ERR_NAMESPACE_MISMATCH":
            return f"refused: {who} belongs to another organization or environment"
        return f"refused: {who} no longer exists (deleted or merged away)"


def _profile_ids(batch: list[Payload]) -> list[str]:
    """The batch's profile ids (``anonymousId``), in order of first appearance."""
    return list(dict.fromkeys(str(payload.get("anonymousId")) for payload in batch))


def split_by_profile(batch: list[Payload], hint: str = "") -> list[list[Payload]]:
    """Two parts sharing no profile, each keeping the batch's order; one part for one profile.

    When exactly one of the batch's profile ids appears in ``hint`` (the API's error message
    names the missing profile), that profile's events make the first part, so the others go in
    one request; otherwise the profiles are halved. A wrong hint only costs another split.
    """
    profiles = _profile_ids(batch)
    if len(profiles) < 2:
        return [batch]
    named = [profile for profile in profiles if profile in hint]
    first = set(named if len(named) == 1 else profiles[: len(profiles) // 2])
    return [
        [payload for payload in batch if str(payload.get("anonymousId")) in first],
        [payload for payload in batch if str(payload.get("anonymousId")) not in first],
    ]


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
