"""Batch bodies joined from events encoded one by one are the bytes the whole document gives."""

from __future__ import annotations

import uuid
from datetime import date, datetime, timezone
from typing import Any

import pytest

from django_experience.api.encoding import (
    EVENTS_BODY_OVERHEAD,
    encode,
    encode_events,
    events_body,
)
from django_experience.api.errors import InvalidData
from django_experience.api.events import identify_event, track_event

EVENTS: list[dict[str, Any]] = [
    track_event(
        "Café crème ☕",
        {"price": 2.5, "tags": ["a", "b"], "nested": {"x": None}},
        anonymous_id="anon-1",
    ),
    identify_event(
        "user-1", {"name": 'Zoë "quoted" \\ back\nslash', "emoji": "🎉"}, anonymous_id="anon-2"
    ),
    {
        "type": "track",
        "event": "dated",
        "anonymousId": "anon-3",
        "properties": {
            "on": date(2026, 1, 2),
            "at": datetime(2026, 1, 2, 3, 4, tzinfo=timezone.utc),
            "id": uuid.UUID(int=7),
            "big": 10**30,
            "tiny": 1e-300,
            "flag": True,
        },
    },
]


@pytest.mark.parametrize("count", [1, 2, 3])
def test_a_joined_body_is_the_documents_encoding(count: int) -> None:
    parts = encode_events(EVENTS[:count])
    body = events_body(parts)
    assert body == encode({"events": EVENTS[:count]})
    assert len(body) == EVENTS_BODY_OVERHEAD + sum(len(part) + 1 for part in parts)


def test_an_event_that_is_not_json_gives_the_documents_error() -> None:
    for bad in ({"x": object()}, {"x": float("nan")}, {"x": {1, 2}}):
        event = {"type": "track", "event": "a", "anonymousId": "anon-1", "properties": bad}
        with pytest.raises(InvalidData) as whole:
            encode({"events": [event]})
        with pytest.raises(InvalidData) as one_by_one:
            encode_events([EVENTS[0], event])
        assert str(one_by_one.value) == str(whole.value)
        assert str(whole.value).startswith("the events cannot be sent as JSON: ")


def test_text_that_is_not_utf8_is_refused_like_json_that_is_not_json() -> None:
    event = {"type": "track", "event": "a", "anonymousId": "anon-1", "properties": {"x": "\ud800"}}
    for encoded in (lambda: encode({"events": [event]}), lambda: encode_events([event])):
        with pytest.raises(InvalidData, match=r"^the events cannot be sent as JSON: 'utf-8' codec"):
            encoded()
