"""Builders of Experience API events, filled the way the official SDKs fill them.

Each builder returns a plain JSON-ready dict with ``type``, ``messageId`` (a UUID4 unless
``message_id`` is given), ``timestamp`` / ``originalTimestamp`` / ``sentAt`` (the same ISO-8601
UTC string with milliseconds), ``channel`` (``"server"`` unless given) and
``context.library`` (this package's name and version). Required fields that are missing or
empty raise ``ValueError`` naming the field. Pass ``anonymous_id`` for the batch endpoints.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NamedTuple, TypedDict
from urllib.parse import parse_qsl, urlsplit

from django_experience import __version__

if TYPE_CHECKING:
    # typing.Unpack is Python 3.11+ and only annotations use it (strings at run time).
    from typing import Unpack

LIBRARY = {"name": "django-experience", "version": __version__}
CHANNELS = ("web", "mobile", "server")
COMPONENT_TYPES = ("Entry", "Variable")
# utm_* query parameter -> context.campaign key
CAMPAIGN_PARAMETERS = {
    "utm_campaign": "name",
    "utm_source": "source",
    "utm_medium": "medium",
    "utm_term": "term",
    "utm_content": "content",
}

Event = dict[str, Any]
Timestamp = datetime | str | None


_ids = random.Random()  # seeded from os.urandom
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_ids.seed)

# The variant nibble of a UUID4 (binary 10xx), looked up by the random hex digit it replaces.
_VARIANT = {digit: "89ab"[int(digit, 16) & 3] for digit in "0123456789abcdef"}


def message_id() -> str:
    """A random UUID4 string, as ``str(uuid.uuid4())`` but in a fraction of its time (one per
    event, several events per page).

    The bits come from a generator of this module's own, seeded by the operating system and
    again in every forked child, not from the kernel each time: a message id only has to be
    unique (the API stores an event once per id), and asking the kernel for 16 bytes costs more
    than building the whole event. Being our own, no ``random.seed()`` of the site's can make
    two processes repeat each other's ids.
    """
    digits = f"{_ids.getrandbits(128):032x}"
    return (
        f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-"
        f"{_VARIANT[digits[16]]}{digits[17:20]}-{digits[20:]}"
    )


_new_message_id = message_id  # _base's keyword argument of the same name hides the function

_now_formatted: tuple[int, str] = (-1, "")  # (milliseconds since the epoch, its ISO text)


def _now() -> str:
    """The current time as :func:`format_timestamp` writes it, formatted once per millisecond
    (the events of one page are built within the same few)."""
    global _now_formatted
    milliseconds = time.time_ns() // 1_000_000
    cached_at, text = _now_formatted
    if cached_at != milliseconds:
        seconds, fraction = divmod(milliseconds, 1000)
        text = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{fraction:03d}Z"
        _now_formatted = (milliseconds, text)  # one tuple: threads see an old or a new pair
    return text


def format_timestamp(moment: datetime) -> str:
    """``2024-05-01T12:00:00.123Z``: UTC with milliseconds, as the SDKs send it."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"timestamp must be timezone-aware, got the naive datetime {moment!r}")
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _timestamp(value: Timestamp) -> str:
    if value is None:
        return _now()
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            parsed = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
        except ValueError:
            raise ValueError(
                f"timestamp must be an ISO-8601 date and time, got {value!r}"
            ) from None
        return format_timestamp(parsed)
    raise ValueError(f"timestamp must be a datetime or an ISO-8601 string, got {value!r}")


def _required_string(value: object, name: str, event_type: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{event_type} events need a non-empty string {name}, got {value!r}")
    return value


def _optional_object(value: object, name: str, event_type: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(
            f"{name} of a {event_type} event must be a dict, got {type(value).__name__}"
        )
    return dict(value)


class EventOptions(TypedDict, total=False):
    """The keyword arguments every builder passes on to :func:`_base` (which holds the defaults:
    ``channel="server"``, the rest ``None``); spelled out once so they cannot drift apart."""

    channel: str
    message_id: str | None
    timestamp: Timestamp
    anonymous_id: str | None
    context: Mapping[str, Any] | None


def _base_context() -> dict[str, Any]:
    """The ``context`` every event starts from.

    Its empty ``location`` makes the API resolve none from the host sending the event (the
    server, whose location is nobody's): it would, for a library version below 3.14, which ours
    is. A call asking for the ``location`` feature (resolution from the visitor's IP) is sent
    without it by the client.
    """
    return {"library": dict(LIBRARY), "location": {}}


def _base(
    event_type: str,
    *,
    channel: str = "server",
    message_id: str | None = None,
    timestamp: Timestamp = None,
    anonymous_id: str | None = None,
    context: Mapping[str, Any] | None = None,
) -> Event:
    if channel not in CHANNELS:
        raise ValueError(f"channel must be one of {', '.join(CHANNELS)}, got {channel!r}")
    if message_id is None:
        message_id = _new_message_id()
    elif not isinstance(message_id, str) or not message_id:
        raise ValueError(f"message_id must be a non-empty string, got {message_id!r}")
    when = _now() if timestamp is None else _timestamp(timestamp)
    event_context = _base_context()
    if context is not None:
        event_context.update(_optional_object(context, "context", event_type))
    event: Event = {
        "type": event_type,
        "messageId": message_id,
        "timestamp": when,
        "originalTimestamp": when,
        "sentAt": when,
        "channel": channel,
        "context": event_context,
    }
    if anonymous_id is not None:
        event["anonymousId"] = _required_string(anonymous_id, "anonymous_id", event_type)
    return event


def page_context(url: str, *, referrer: str = "") -> dict[str, Any]:
    """``context.page`` for ``url``: path, query (last value wins), referrer, search, url."""
    parts = urlsplit(url)
    # Most pages have no query string: parse_qsl would find nothing in it, at some cost.
    query = dict(parse_qsl(parts.query, keep_blank_values=True)) if parts.query else {}
    return {
        "path": parts.path or "/",
        "query": query,
        "referrer": referrer,
        "search": f"?{parts.query}" if parts.query else "",
        "url": url,
    }


def campaign_context(query: Mapping[str, str]) -> dict[str, str]:
    """``context.campaign`` from the ``utm_*`` parameters that are present."""
    return {key: query[name] for name, key in CAMPAIGN_PARAMETERS.items() if name in query}


def page_event(
    url: str,
    *,
    title: str = "",
    referrer: str = "",
    user_agent: str | None = None,
    locale: str | None = None,
    properties: Mapping[str, Any] | None = None,
    **options: Unpack[EventOptions],
) -> Event:
    """A ``page`` view of ``url`` (a full URL with scheme, host, path and query string)."""
    _required_string(url, "url", "page")
    page = page_context(url, referrer=referrer or "")
    event = _base("page", **options)
    event_context = event["context"]
    event_context["page"] = page
    query = page["query"]
    event_context["campaign"] = campaign_context(query) if query else {}
    if user_agent:
        event_context["userAgent"] = user_agent
    if locale:
        event_context["locale"] = locale
    event["properties"] = {
        **page,
        "title": title or "",
        **_optional_object(properties, "properties", "page"),
    }
    return event


def track_event(
    event: str,
    properties: Mapping[str, Any] | None = None,
    **options: Unpack[EventOptions],
) -> Event:
    """A ``track`` event named ``event`` (for example ``"Added to cart"``)."""
    name = _required_string(event, "event", "track")
    built = _base("track", **options)
    built["event"] = name
    built["properties"] = _optional_object(properties, "properties", "track")
    return built


def identify_event(
    user_id: str,
    traits: Mapping[str, Any] | None = None,
    **options: Unpack[EventOptions],
) -> Event:
    """An ``identify`` event: ``user_id`` (your stable id of the person) and ``traits``."""
    identifier = _required_string(user_id, "user_id", "identify")
    if traits is not None and not isinstance(traits, Mapping):
        raise ValueError(f"traits of an identify event must be a dict, got {type(traits).__name__}")
    built = _base("identify", **options)
    built["userId"] = identifier
    built["traits"] = dict(traits or {})
    return built


def screen_event(
    name: str,
    properties: Mapping[str, Any] | None = None,
    **options: Unpack[EventOptions],
) -> Event:
    """A ``screen`` view (the mobile page view) of the screen ``name``."""
    screen = _required_string(name, "name", "screen")
    built = _base("screen", **options)
    built["name"] = screen
    built["properties"] = {**_optional_object(properties, "properties", "screen"), "name": screen}
    return built


class ComponentView(NamedTuple):
    """A variant the visitor was shown, checked now and sent later as a ``component`` event
    (see :func:`component_view_events`)."""

    component_id: str
    experience_id: str
    variant_index: int
    component_type: str = "Entry"


def _check_component(
    component_id: object,
    experience_id: object,
    variant_index: object,
    component_type: object,
) -> str:
    component = _required_string(component_id, "component_id", "component")
    if component_type not in COMPONENT_TYPES:
        raise ValueError(
            f"component_type must be one of {', '.join(COMPONENT_TYPES)}, got {component_type!r}"
        )
    if experience_id is not None:
        _required_string(experience_id, "experience_id", "component")
    if variant_index is not None and (
        isinstance(variant_index, bool) or not isinstance(variant_index, int) or variant_index < 0
    ):
        raise ValueError(f"variant_index must be an integer >= 0, got {variant_index!r}")
    return component


def component_event(
    component_id: str,
    *,
    experience_id: str | None = None,
    variant_index: int | None = None,
    component_type: str = "Entry",
    **options: Unpack[EventOptions],
) -> Event:
    """A ``component`` view; with ``experience_id`` and ``variant_index`` it pins the variant."""
    component = _check_component(component_id, experience_id, variant_index, component_type)
    built = _base("component", **options)
    built["componentId"] = component
    built["componentType"] = component_type
    if experience_id is not None:
        built["experienceId"] = experience_id
    if variant_index is not None:
        built["variantIndex"] = variant_index
    return built


def component_view(
    component_id: str,
    *,
    experience_id: str,
    variant_index: int,
    component_type: str = "Entry",
) -> ComponentView:
    """A :class:`ComponentView`, checked as :func:`component_event` checks its arguments."""
    _check_component(component_id, experience_id, variant_index, component_type)
    if experience_id is None or variant_index is None:
        raise ValueError("component views need an experience_id and a variant_index")
    return ComponentView(component_id, experience_id, variant_index, component_type)


def component_view_events(views: Iterable[tuple[str, ComponentView]]) -> list[Event]:
    """The ``component`` events of one page's views, each ``(anonymousId, view)``, ready for
    the batch endpoint.

    Each is the event :func:`component_event` builds, with its ``anonymousId``; they share one
    timestamp and one ``context`` object: built at once when the response leaves, a page's
    views cost one pass instead of a full event each while the page renders.
    """
    when = _now()
    context = _base_context()
    return [
        {
            "type": "component",
            "messageId": _new_message_id(),
            "timestamp": when,
            "originalTimestamp": when,
            "sentAt": when,
            "channel": "server",
            "context": context,
            "componentId": view.component_id,
            "componentType": view.component_type,
            "experienceId": view.experience_id,
            "variantIndex": view.variant_index,
            "anonymousId": anonymous_id,
        }
        for anonymous_id, view in views
    ]


__all__ = [
    "LIBRARY",
    "ComponentView",
    "campaign_context",
    "component_event",
    "component_view",
    "component_view_events",
    "format_timestamp",
    "identify_event",
    "message_id",
    "page_context",
    "page_event",
    "screen_event",
    "track_event",
]
