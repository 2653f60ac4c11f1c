"""Split events for the batch endpoints into requests the API accepts.

The batch endpoints take at most 200 events, 50 identify events and 50 distinct profiles
(``anonymousId``) per request. :func:`plan_batches` splits any number of events into such
requests, keeping each profile's events in their original order: a profile whose events do not
fit into one request continues at the head of the next one, so its events land in consecutive
requests. The requests must then be sent in plan order per profile (see
:mod:`django_experience.api.scheduling`).
"""

from __future__ import annotations

import operator
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from typing import Any

from django_experience.api.encoding import EVENTS_BODY_OVERHEAD, encode_events
from django_experience.api.errors import InvalidData

MAX_EVENTS = 200
MAX_IDENTIFY = 50
MAX_PROFILES = 50
# The API documents no body limit; this keeps a request of large events well below any a
# gateway sets (the emulator refuses over 1 MiB).
MAX_BATCH_BYTES = 512 * 1024

Event = dict[str, Any]


class EncodedBatch(list[Event]):
    """Events with their JSON as the request carries it (``parts[i]`` encodes ``self[i]``).

    The batch is sized by these bytes and its request body joined from them, so each event is
    encoded once. Slicing gives plain lists (encoded again when sent); :meth:`slice` keeps the
    encoding.
    """

    def __init__(self, events: list[Event], parts: list[bytes]) -> None:
        super().__init__(events)
        self.parts = parts
        self._events = tuple(events)

    @classmethod
    def of(cls, events: list[Event]) -> EncodedBatch:
        """``events`` with their encoding; InvalidData when one is not JSON."""
        return cls(events, encode_events(events))

    def intact(self) -> bool:
        """Whether the list still holds the very events ``parts`` encode (not changed since)."""
        return len(self) == len(self._events) and all(map(operator.is_, self, self._events))

    def slice(self, start: int, end: int) -> EncodedBatch:
        return EncodedBatch(self[start:end], self.parts[start:end])


def byte_cuts(sizes: list[int], envelope: int, max_bytes: int) -> list[tuple[int, int]]:
    """``(start, end)`` of consecutive parts, each as many items as fit within ``max_bytes``
    (``envelope`` plus their ``sizes``), at least one."""
    cuts: list[tuple[int, int]] = []
    start, size = 0, envelope
    for index, item in enumerate(sizes):
        if index > start and size + item > max_bytes:
            cuts.append((start, index))
            start, size = index, envelope
        size += item
    if start < len(sizes):
        cuts.append((start, len(sizes)))
    return cuts


def split_encoded(batch: EncodedBatch, max_bytes: int) -> list[EncodedBatch]:
    """``batch`` in consecutive parts (order kept) whose bodies stay within ``max_bytes``,
    exactly; an event larger than that travels alone (the API decides about it)."""
    cuts = byte_cuts([len(part) + 1 for part in batch.parts], EVENTS_BODY_OVERHEAD, max_bytes)
    return [batch] if len(cuts) == 1 else [batch.slice(*cut) for cut in cuts]


def profile_key(event: Mapping[str, Any]) -> str:
    """The profile a batch event belongs to (its ``anonymousId``)."""
    return str(event["anonymousId"])


def validate_batch_events(events: Iterable[Mapping[str, Any]]) -> list[Event]:
    """The events as a list of dicts; InvalidData naming the first one without ``anonymousId``."""
    if isinstance(events, Mapping | str | bytes):
        raise InvalidData("events must be a list of event dicts, not a single value")
    checked: list[Event] = []
    for index, event in enumerate(events):
        # ``type() is dict`` first: the Mapping check goes through the ABC machinery, slow
        # for every event of a large batch.
        if type(event) is not dict and not isinstance(event, Mapping):
            raise InvalidData(
                f"events[{index}] must be an object (dict), got {type(event).__name__}"
            )
        anonymous_id = event.get("anonymousId")
        if not isinstance(anonymous_id, str) or not anonymous_id:
            raise InvalidData(
                f"events[{index}] has no anonymousId: the batch endpoints need a non-empty "
                "string anonymousId on every event"
            )
        checked.append(event if isinstance(event, dict) else dict(event))
    return checked


def plan_batches(
    events: Iterable[Mapping[str, Any]],
    *,
    max_events: int = MAX_EVENTS,
    max_identify: int = MAX_IDENTIFY,
    max_profiles: int = MAX_PROFILES,
) -> list[list[Event]]:
    """Requests (lists of events) that respect all three limits, per-profile order kept.

    Every event must carry a non-empty string ``anonymousId``; otherwise :class:`InvalidData`
    names the first offending index and nothing is planned. Within a request, events keep
    their original relative order.
    """
    for name, limit in (
        ("max_events", max_events),
        ("max_identify", max_identify),
        ("max_profiles", max_profiles),
    ):
        if limit < 1:
            raise ValueError(f"{name} must be at least 1, got {limit}")
    checked = validate_batch_events(events)
    if not checked:
        return []
    if len(checked) <= max_events:
        # The common case in background delivery: everything fits in one request as it is.
        identify_count = sum(1 for event in checked if event.get("type") == "identify")
        if identify_count <= max_identify and (
            len({profile_key(event) for event in checked}) <= max_profiles
        ):
            return [checked]

    # Per profile, its events (with their original position) in order of first appearance.
    queues: OrderedDict[str, deque[tuple[int, Event]]] = OrderedDict()
    for position, event in enumerate(checked):
        queues.setdefault(profile_key(event), deque()).append((position, event))

    batches: list[list[Event]] = []
    while queues:
        batch: list[tuple[int, Event]] = []
        identify_count = 0
        profile_count = 0
        idle_profiles = 0  # profiles looked at that could add nothing (identify limit reached)
        exhausted: list[str] = []
        for key, queue in queues.items():
            if len(batch) >= max_events or profile_count >= max_profiles:
                break
            if identify_count >= max_identify and idle_profiles > max_events:
                break  # bound the search for profiles whose next event is not an identify
            taken = 0
            while queue and len(batch) < max_events:
                is_identify = queue[0][1].get("type") == "identify"
                if is_identify and identify_count >= max_identify:
                    break
                batch.append(queue.popleft())
                identify_count += is_identify
                taken += 1
            if taken:
                profile_count += 1
            else:
                idle_profiles += 1
            if not queue:
                exhausted.append(key)
        for key in exhausted:
            del queues[key]
        batch.sort(key=lambda item: item[0])
        batches.append([event for _, event in batch])
    return batches


__all__ = [
    "MAX_EVENTS",
    "MAX_IDENTIFY",
    "MAX_PROFILES",
    "plan_batches",
    "profile_key",
    "validate_batch_events",
]
