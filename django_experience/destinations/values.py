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
DATETIME_PATTERN = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}", re.ASCII)
DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}", re.ASCII)  # fullmatch: not before a "\n"
# The time-zone designator at the end of an ISO 8601 date-time: Z, +hh:mm, +hhmm, +hh.
ZONE_PATTERN = re.compile(r"(Z|z|[+-]\d{2}(:?\d{2})?)$")
# The ISO 8601 date-times we accept, whole: a date, T (or a space), hh:mm, optional seconds with
# an optional fraction (any number of digits, after "." or ","), an optional zone designator.
ISO_DATETIME = re.compile(
    r"(?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})[T ]"
    r"(?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?"
    r"(?P<zone>[Zz]|(?P<sign>[+-])(?P<zone_hours>\d{2})(?::?(?P<zone_minutes>\d{2}))?)?",
    re.ASCII,
)


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
    """The date-time an ISO 8601 string denotes, or ``None`` if it is not one.

    Parsed here rather than with ``datetime.fromisoformat``, which before Python 3.11 refuses
    a trailing ``Z``, ``+hhmm`` offsets and fractions other than 3 or 6 digits (the Releva
    document's own example, ``2019-08-18T05:48:42.419Z``, among them): the same strings are
    accepted on every supported Python.
    """
    match = ISO_DATETIME.fullmatch(value.strip())
    if match is None:
        return None
    zone: dt.tzinfo | None = None
    try:
        if match["zone"] in ("Z", "z"):
            zone = dt.timezone.utc
        elif match["zone"]:
            hours, minutes = int(match["zone_hours"]), int(match["zone_minutes"] or 0)
            if minutes > 59:
                return None
            offset = dt.timedelta(hours=hours, minutes=minutes)
            zone = dt.timezone(-offset if match["sign"] == "-" else offset)
        return dt.datetime(
            int(match["year"]), int(match["month"]), int(match["day"]),
            int(match["hour"]), int(match["minute"]), int(match["second"] or 0),
            int((match["fraction"] or "")[:6].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError:  # out of range: month 13, hour 25, an offset of a day or more, ...
        return None


def parse_date(value: str) -> dt.date | None:
    """The date a ``YYYY-MM-DD`` string denotes, or ``None``."""
    if not DATE_PATTERN.fullmatch(value):
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        return None


def with_iso_offset(value: dt.datetime) -> dt.datetime:
    """``value``, or the same instant in UTC when its offset has seconds (a zone's local mean
    time, before 1900 or so): ISO 8601 has no form for such an offset."""
    offset = value.utcoffset()
    if offset is not None and offset % dt.timedelta(minutes=1):
        return value.astimezone(dt.timezone.utc)
    return value


def format_datetime(value: dt.datetime) -> str:
    """ISO 8601 with its offset; UTC is written ``Z`` as the platforms' examples do."""
    text = with_iso_offset(value).isoformat()
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
    "with_iso_offset",
]
