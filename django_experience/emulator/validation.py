"""Validation of request bodies and events, with messages that name the offending field."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from django_experience.emulator.errors import APIError, invalid_data

EVENT_TYPES = ("page", "track", "identify", "screen", "component")
CHANNELS = ("web", "mobile", "server", "client")  # the API stores "client" as "web"
COMPONENT_TYPES = ("Entry", "Variable")
FEATURES = ("location", "ip-enrichment")
PAGE_PROPERTIES = ("path", "query", "referrer", "search", "url")
MAX_BATCH_EVENTS = 200
MAX_BATCH_IDENTIFY = 50
MAX_BATCH_PROFILES = 50
MAX_PROFILE_ID_LENGTH = 256
MAX_JSON_DEPTH = 64


def parse_body(raw: bytes) -> dict[str, Any]:
    """Parse a JSON body (sent as application/json or text/plain) into an object."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid_data(f"Request body is not UTF-8 (byte {exc.start})") from exc
    if not text.strip():
        raise invalid_data("Request body is empty; expected a JSON object with 'events'")
    try:
        data = json.loads(text, parse_constant=refuse_constant)
    except ValueError as exc:
        raise invalid_data(f"Request body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise invalid_data("Request body is nested too deeply") from exc
    if not isinstance(data, dict):
        raise invalid_data(f"Request body must be a JSON object, got {_json_type(data)}")
    if _depth_exceeds(data, MAX_JSON_DEPTH):
        raise invalid_data(f"Request body is nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def refuse_constant(name: str) -> Any:
    """A ``parse_constant`` for ``json.loads``: NaN and Infinity, which it would read, are not
    JSON."""
    raise ValueError(f"{name} is not valid JSON")


def _depth_exceeds(value: object, limit: int) -> bool:
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return False


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def events_of(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The validated ``events`` list of a body."""
    events = body.get("events")
    if not isinstance(events, list) or not events:
        raise invalid_data("'events' must be a non-empty array")
    for index, event in enumerate(events):
        validate_event(event, f"events[{index}]")
    return events


def options_of(body: Mapping[str, Any]) -> dict[str, Any]:
    options = body.get("options")
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise invalid_data(f"'options' must be an object, got {_json_type(options)}")
    features = options.get("features")
    if features is not None:
        if not isinstance(features, list):
            raise invalid_data("'options.features' must be an array of strings")
        for index, feature in enumerate(features):
            if feature not in FEATURES:
                raise invalid_data(
                    f"options.features[{index}] {_shown(feature)} is not one of "
                    f"{', '.join(FEATURES)}"
                )
    location = options.get("location")
    if location is not None and not isinstance(location, dict):
        raise invalid_data("'options.location' must be an object")
    return options


def _shown(value: object) -> str:
    """``value`` as JSON, cut short, for a message."""
    try:
        return json.dumps(value)[:60]
    except (TypeError, ValueError):
        return _json_type(value)


def _require_string(event: Mapping[str, Any], key: str, where: str) -> None:
    value = event.get(key)
    if value is None:
        raise invalid_data(f"{where}.{key} is required for {event.get('type')} events")
    if not isinstance(value, str):
        raise invalid_data(f"{where}.{key} must be a string, got {_json_type(value)}")


def _require_object(event: Mapping[str, Any], key: str, where: str) -> None:
    value = event.get(key)
    if value is None:
        raise invalid_data(f"{where}.{key} is required for {event.get('type')} events")
    if not isinstance(value, dict):
        raise invalid_data(f"{where}.{key} must be an object, got {_json_type(value)}")


def _optional_object(event: Mapping[str, Any], key: str, where: str) -> None:
    value = event.get(key)
    if value is not None and not isinstance(value, dict):
        raise invalid_data(f"{where}.{key} must be an object, got {_json_type(value)}")


def _one_of(event: Mapping[str, Any], key: str, where: str, allowed: tuple[str, ...]) -> None:
    value = event.get(key)
    if value not in allowed:
        raise invalid_data(
            f"{where}.{key} {_shown(value)} is not one of {', '.join(allowed)}"
        )


def validate_event(event: object, where: str) -> None:
    """Raise ``ERR_INVALID_DATA`` naming the field when ``event`` is not a valid event.

    Required, as the document's ``Event`` type has it: ``type``, ``messageId``,
    ``channel`` (one of ``CHANNELS``), ``context`` with ``context.library`` (``name`` and
    ``version``); per type ``event`` and ``properties`` (track), ``properties`` with its five
    page fields (page), ``userId`` and ``traits`` (identify; ``userId`` may be empty, as the
    official SDK sends it before consent), ``properties.name`` (screen), ``componentId``
    (component; ``componentType``, when given, one of ``COMPONENT_TYPES``). ``timestamp``, when
    given, must be an ISO 8601 date or epoch milliseconds.
    """
    if not isinstance(event, dict):
        raise invalid_data(f"{where} must be an object, got {_json_type(event)}")
    kind = event.get("type")
    if kind is None:
        raise invalid_data(f"{where}.type is required")
    if kind not in EVENT_TYPES:
        raise invalid_data(
            f"{where}.type {json.dumps(kind)[:60]} is not one of {', '.join(EVENT_TYPES)}"
        )
    for key in ("context", "properties"):
        _optional_object(event, key, where)
    context = event.get("context") or {}
    for key in ("page", "campaign", "location", "library"):
        value = context.get(key)
        if value is not None and not isinstance(value, dict):
            raise invalid_data(f"{where}.context.{key} must be an object, got {_json_type(value)}")
    for key in ("messageId", "anonymousId", "channel"):
        value = event.get(key)
        if value is not None and not isinstance(value, str):
            raise invalid_data(f"{where}.{key} must be a string, got {_json_type(value)}")
    if not event.get("messageId"):
        raise invalid_data(f"{where}.messageId is required (a UUID)")
    # The Event type marks ``timestamp`` required, yet the document's own Create example sends
    # none and is answered: an event without one happened when the request came in.
    if event.get("timestamp") is not None and event_time_ms(event) is None:
        raise invalid_data(f"{where}.timestamp is not an ISO 8601 date or epoch milliseconds")
    if event.get("channel") is None:
        raise invalid_data(f"{where}.channel is required")
    _one_of(event, "channel", where, CHANNELS)
    if "context" not in event or event["context"] is None:
        raise invalid_data(f"{where}.context is required")
    library = context.get("library")
    if library is None:
        raise invalid_data(f"{where}.context.library is required")
    for key in ("name", "version"):
        value = library.get(key)
        if value is None:
            raise invalid_data(f"{where}.context.library.{key} is required")
        if not isinstance(value, str):
            raise invalid_data(
                f"{where}.context.library.{key} must be a string, got {_json_type(value)}"
            )
    if kind == "page":
        _require_object(event, "properties", where)
        properties = event["properties"]
        for key in PAGE_PROPERTIES:
            value = properties.get(key)
            if value is None:
                raise invalid_data(f"{where}.properties.{key} is required for page events")
            expected = dict if key == "query" else str
            if not isinstance(value, expected):
                raise invalid_data(
                    f"{where}.properties.{key} must be "
                    f"{'an object' if expected is dict else 'a string'}, got {_json_type(value)}"
                )
    elif kind == "track":
        _require_string(event, "event", where)
        if not event["event"]:
            raise invalid_data(f"{where}.event must not be empty")
        _require_object(event, "properties", where)
    elif kind == "identify":
        _require_string(event, "userId", where)  # "" is allowed: the SDK blanks it pre-consent
        _require_object(event, "traits", where)
    elif kind == "screen":
        properties = event.get("properties") or {}
        name = properties.get("name")
        if not isinstance(name, str) or not name:
            raise invalid_data(f"{where}.properties.name is required for screen events")
    elif kind == "component":
        _require_string(event, "componentId", where)
        if event.get("componentType") is not None:
            _one_of(event, "componentType", where, COMPONENT_TYPES)
        experience_id = event.get("experienceId")
        if experience_id is not None and not isinstance(experience_id, str):
            raise invalid_data(f"{where}.experienceId must be a string")
        variant_index = event.get("variantIndex")
        if variant_index is not None and (
            isinstance(variant_index, bool) or not isinstance(variant_index, int)
            or variant_index < 0
        ):
            raise invalid_data(f"{where}.variantIndex must be a non-negative integer")


def event_time_ms(event: Mapping[str, Any]) -> float | None:
    """The event's timestamp in epoch milliseconds, or None when it cannot be read."""
    value = event.get("timestamp")
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if value == value and abs(value) < 1e15 else None
    if not isinstance(value, str) or not value or len(value) > 64:
        return None
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    try:
        return moment.timestamp() * 1000.0
    except (OverflowError, ValueError):
        return None


def validate_profile_id(profile_id: str) -> None:
    if not profile_id or len(profile_id) > MAX_PROFILE_ID_LENGTH:
        raise invalid_data(
            f"profileId must be 1 to {MAX_PROFILE_ID_LENGTH} characters, got {len(profile_id)}"
        )


def validate_batch(events: list[dict[str, Any]]) -> list[str]:
    """Check the batch limits; return the distinct anonymous ids in order of appearance."""
    if len(events) > MAX_BATCH_EVENTS:
        raise invalid_data(
            f"A batch accepts at most {MAX_BATCH_EVENTS} events, got {len(events)}"
        )
    identify = sum(1 for e in events if e.get("type") == "identify")
    if identify > MAX_BATCH_IDENTIFY:
        raise invalid_data(
            f"A batch accepts at most {MAX_BATCH_IDENTIFY} identify events, got {identify}"
        )
    ids: dict[str, None] = {}
    for index, event in enumerate(events):
        anonymous_id = event.get("anonymousId")
        if not isinstance(anonymous_id, str) or not anonymous_id:
            raise invalid_data(f"events[{index}].anonymousId is required for batch events")
        if len(anonymous_id) > MAX_PROFILE_ID_LENGTH:
            raise invalid_data(
                f"events[{index}].anonymousId is longer than {MAX_PROFILE_ID_LENGTH} characters"
            )
        ids[anonymous_id] = None
    if len(ids) > MAX_BATCH_PROFILES:
        raise invalid_data(
            f"A batch accepts events of at most {MAX_BATCH_PROFILES} profiles, got {len(ids)}"
        )
    return list(ids)


__all__ = ["APIError", "refuse_constant"]
