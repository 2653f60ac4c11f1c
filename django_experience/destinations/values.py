"""Turning Python values into JSON-ready values, and recognising ISO 8601 date-times.

Shared by both destinations: datetimes become ISO 8601 strings, dates ``YYYY-MM-DD``, UUIDs and
Decimals strings; anything JSON cannot carry is refused with the field named.
"""

from __future__ import annotations

import datetime as dt
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

# A string that claims to be a date with a time of day ("2026-04-21T15:30", "... 15:30:00").
DATETIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
DATE_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}$")
# The time-zone designator at the end of an ISO 8601 date-time: Z, +hh:mm, +hhmm, +hh.
ZONE_PATTERN = re.compile(r"(Z|z|[+-]\d{2}(:?\d{2})?)$")


class ValueProblem(ValueError):
    """A value that cannot be sent; ``field`` is its dotted path."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def looks_like_datetime(value: str) -> bool:
    return bool(DATETIME_PATTERN.match(value))


def is_naive_datetime_string(value: str) -> bool:
    """True for an ISO 8601 date-time string without a time zone."""
    return looks_like_datetime(value) and not ZONE_PATTERN.search(value.strip())


def parse_datetime(value: str) -> dt.datetime | None:
    """The date-time an ISO 8601 string denotes, or ``None`` if it is not one."""
    if not looks_like_datetime(value):
        return None
    try:
        return dt.datetime.fromisoformat(value.strip())
    except ValueError:
        return None


def parse_date(value: str) -> dt.date | None:
    """The date a ``YYYY-MM-DD`` string denotes, or ``None``."""
    if not DATE_PATTERN.match(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def format_datetime(value: dt.datetime) -> str:
    """ISO 8601 with its offset; UTC is written ``Z`` as the platforms' examples do."""
    text = value.isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def to_json(value: Any, field: str, *, require_zone: bool) -> Any:
    """``value`` as JSON-ready data. ``require_zone`` refuses naive date-times (objects or
    strings), naming the field."""
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str) and require_zone and is_naive_datetime_string(value):
            raise ValueProblem(field, f"date-time {value!r} has no time zone")
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueProblem(field, f"{value!r} is not a finite number")
        return value
    if isinstance(value, dt.datetime):
        if require_zone and value.utcoffset() is None:
            raise ValueProblem(field, f"datetime {value.isoformat()!r} has no time zone")
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (uuid.UUID, Decimal)):
        return str(value)
    if isinstance(value, Mapping):
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueProblem(field, f"key {key!r} is not a string")
            result[key] = to_json(item, f"{field}.{key}", require_zone=require_zone)
        return result
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return [
            to_json(item, f"{field}[{index}]", require_zone=require_zone)
            for index, item in enumerate(value)
        ]
    raise ValueProblem(field, f"a {type(value).__name__} cannot be sent as JSON")


__all__ = [
    "ValueProblem",
    "format_datetime",
    "is_naive_datetime_string",
    "looks_like_datetime",
    "parse_date",
    "parse_datetime",
    "to_json",
]
