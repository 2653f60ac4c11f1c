"""JSON request bodies, encoded as the API receives them.

One encoder for every body: compact, UTF-8, no NaN, dates and UUIDs as ISO strings. A batch
body can also be joined from its events encoded one by one (:func:`encode_events`,
:func:`events_body`), byte for byte what encoding the whole document gives, so a sender that
sizes its batches by their bytes encodes each event once.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from django_experience.api.errors import InvalidData


def _json_default(value: object) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# One encoder for every call: ``json.dumps`` with options builds a new one each time.
_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
)

_EVENTS_START = b'{"events":['
_EVENTS_END = b"]}"


def _not_json(exc: Exception) -> InvalidData:
    return InvalidData(f"the events cannot be sent as JSON: {exc}")


def encode(document: Mapping[str, Any]) -> bytes:
    """``document`` as a request body; InvalidData when it is not JSON (or not UTF-8: a lone
    surrogate)."""
    try:
        return _ENCODER.encode(document).encode("utf-8")
    except (TypeError, ValueError) as exc:  # UnicodeEncodeError is a ValueError
        raise _not_json(exc) from exc


def encode_events(events: Iterable[Mapping[str, Any]]) -> list[bytes]:
    """Each event as a batch body carries it; InvalidData, as from :func:`encode`, when one is
    not JSON."""
    try:  # one try for all: a batch has up to 200 events
        return [_ENCODER.encode(event).encode("utf-8") for event in events]
    except (TypeError, ValueError) as exc:
        raise _not_json(exc) from exc


def events_body(parts: Sequence[bytes]) -> bytes:
    """The body ``{"events": [...]}`` of the events :func:`encode_events` encoded."""
    return _EVENTS_START + b",".join(parts) + _EVENTS_END


# A batch body's size is this plus, per event, its bytes and one for the comma before the next.
EVENTS_BODY_OVERHEAD = len(_EVENTS_START) + len(_EVENTS_END) - 1


__all__ = ["EVENTS_BODY_OVERHEAD", "encode", "encode_events", "events_body"]
