"""Event builders: the fields the official SDKs fill, and clear errors for missing ones."""

from __future__ import annotations

import re
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

import django_experience
from django_experience.api.events import (
    component_event,
    component_view,
    component_view_events,
    identify_event,
    page_event,
    screen_event,
    track_event,
)

ISO_MILLIS_UTC = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")

BUILDERS = [
    lambda **kw: page_event("https://shop.example/", **kw),
    lambda **kw: track_event("Added to cart", **kw),
    lambda **kw: identify_event("user-1", {}, **kw),
    lambda **kw: screen_event("Home", **kw),
    lambda **kw: component_event("entry-1", **kw),
]
BUILDER_IDS = ["page", "track", "identify", "screen", "component"]


@pytest.mark.parametrize("build", BUILDERS, ids=BUILDER_IDS)
def test_common_fields(build: Any) -> None:
    event = build()
    assert uuid.UUID(event["messageId"]).version == 4
    assert ISO_MILLIS_UTC.match(event["timestamp"])
    assert event["timestamp"] == event["originalTimestamp"] == event["sentAt"]
    sent = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    assert abs(sent - datetime.now(timezone.utc)) < timedelta(seconds=5)
    assert event["channel"] == "server"
    assert event["context"]["library"] == {
        "name": "django-experience",
        "version": django_experience.__version__,
    }
    assert "anonymousId" not in event
    assert build()["messageId"] != event["messageId"]


@pytest.mark.parametrize("build", BUILDERS, ids=BUILDER_IDS)
def test_given_message_id_timestamp_channel_and_anonymous_id(build: Any) -> None:
    berlin = timezone(timedelta(hours=2))
    event = build(
        message_id="row-17",
        timestamp=datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=berlin),
        channel="web",
        anonymous_id="anon-1",
        context={"locale": "de-DE"},
    )
    assert event["messageId"] == "row-17"
    assert event["timestamp"] == event["sentAt"] == "2026-05-01T12:00:00.123Z"
    assert event["channel"] == "web"
    assert event["anonymousId"] == "anon-1"
    assert event["context"]["locale"] == "de-DE"
    assert event["context"]["library"]["name"] == "django-experience"


@pytest.mark.parametrize("build", BUILDERS, ids=BUILDER_IDS)
def test_bad_common_arguments(build: Any) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        build(timestamp=datetime(2026, 5, 1, 12, 0))
    with pytest.raises(ValueError, match="ISO-8601"):
        build(timestamp="yesterday")
    with pytest.raises(ValueError, match="channel"):
        build(channel="fax")
    with pytest.raises(ValueError, match="message_id"):
        build(message_id="")
    with pytest.raises(ValueError, match="anonymous_id"):
        build(anonymous_id="")


def test_timestamp_string_is_normalised() -> None:
    event = track_event("a", timestamp="2026-05-01T12:00:00Z")
    assert event["timestamp"] == "2026-05-01T12:00:00.000Z"


def test_page_event() -> None:
    url = "https://shop.example/boots/?utm_campaign=spring&utm_source=news&color=red"
    event = page_event(
        url,
        title="Boots",
        referrer="https://search.example/",
        user_agent="Mozilla/5.0",
        locale="en-US",
        properties={"category": "shoes"},
    )
    assert event["type"] == "page"
    page = {
        "path": "/boots/",
        "query": {"utm_campaign": "spring", "utm_source": "news", "color": "red"},
        "referrer": "https://search.example/",
        "search": "?utm_campaign=spring&utm_source=news&color=red",
        "url": url,
    }
    assert event["context"]["page"] == page
    assert event["context"]["campaign"] == {"name": "spring", "source": "news"}
    assert event["context"]["userAgent"] == "Mozilla/5.0"
    assert event["context"]["locale"] == "en-US"
    assert event["properties"] == {**page, "title": "Boots", "category": "shoes"}


def test_page_event_campaign_from_every_utm_parameter() -> None:
    event = page_event(
        "https://x.example/?utm_campaign=c&utm_source=s&utm_medium=m&utm_term=t&utm_content=o"
    )
    assert event["context"]["campaign"] == {
        "name": "c",
        "source": "s",
        "medium": "m",
        "term": "t",
        "content": "o",
    }


def test_page_event_without_query() -> None:
    event = page_event("https://x.example")
    assert event["context"]["page"] == {
        "path": "/",
        "query": {},
        "referrer": "",
        "search": "",
        "url": "https://x.example",
    }
    assert event["context"]["campaign"] == {}
    assert "userAgent" not in event["context"] and "locale" not in event["context"]
    assert event["properties"]["title"] == ""


def test_track_event() -> None:
    event = track_event("Added to cart", {"sku": "B-1", "price": 12.5})
    assert (event["type"], event["event"]) == ("track", "Added to cart")
    assert event["properties"] == {"sku": "B-1", "price": 12.5}
    assert track_event("x")["properties"] == {}


def test_identify_event() -> None:
    event = identify_event("user-1", {"firstname": "Max", "address": {"city": "Rome"}})
    assert (event["type"], event["userId"]) == ("identify", "user-1")
    assert event["traits"] == {"firstname": "Max", "address": {"city": "Rome"}}
    assert identify_event("user-2", None)["traits"] == {}


def test_screen_event() -> None:
    event = screen_event("Checkout", {"step": 2})
    assert event["type"] == "screen"
    assert event["properties"] == {"step": 2, "name": "Checkout"}


def test_component_event() -> None:
    event = component_event(
        "hero-gold", experience_id="exp-hero", variant_index=1, component_type="Variable"
    )
    assert event["type"] == "component"
    assert event["componentId"] == "hero-gold"
    assert event["componentType"] == "Variable"
    assert (event["experienceId"], event["variantIndex"]) == ("exp-hero", 1)
    plain = component_event("hero")
    assert plain["componentType"] == "Entry"
    assert "experienceId" not in plain and "variantIndex" not in plain


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: page_event(""), "url"),
        (lambda: page_event(None), "url"),  # type: ignore[arg-type]
        (lambda: page_event("https://x.example/", properties=["a"]), "properties"),  # type: ignore[arg-type]
        (lambda: track_event(""), "event"),
        (lambda: track_event("  "), "event"),
        (lambda: track_event("a", properties="x"), "properties"),  # type: ignore[arg-type]
        (lambda: identify_event("", {}), "user_id"),
        (lambda: identify_event(7, {}), "user_id"),  # type: ignore[arg-type]
        (lambda: identify_event("u", ["a"]), "traits"),  # type: ignore[arg-type]
        (lambda: identify_event("u", "tier=gold"), "traits"),  # type: ignore[arg-type]
        (lambda: screen_event(""), "name"),
        (lambda: component_event(""), "component_id"),
        (lambda: component_event("c", component_type="Widget"), "component_type"),
        (lambda: component_event("c", variant_index=-1), "variant_index"),
        (lambda: component_event("c", variant_index=True), "variant_index"),
        (lambda: component_event("c", experience_id=""), "experience_id"),
    ],
)
def test_missing_or_bad_required_fields(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


def test_component_view_events_are_component_events_with_their_anonymous_id() -> None:
    views = [
        ("p-1", component_view("hero-gold", experience_id="exp-hero", variant_index=1)),
        (
            "p-2",
            component_view(
                "ctaColor", experience_id="exp-cta", variant_index=0, component_type="Variable"
            ),
        ),
    ]
    built = component_view_events(views)
    for (anonymous_id, view), event in zip(views, built, strict=True):
        expected = {
            **component_event(
                view.component_id,
                experience_id=view.experience_id,
                variant_index=view.variant_index,
                component_type=view.component_type,
            ),
            "anonymousId": anonymous_id,
        }
        # Same fields in the same order; ids and times are each event's own.
        assert list(event) == list(expected)
        for key in ("messageId", "timestamp", "originalTimestamp", "sentAt"):
            expected[key] = event[key]
        assert event == expected
    assert built[0]["messageId"] != built[1]["messageId"]
    assert built[0]["timestamp"] == built[1]["timestamp"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"component_id": "", "experience_id": "e", "variant_index": 1}, "component_id"),
        ({"component_id": "c", "experience_id": "", "variant_index": 1}, "experience_id"),
        ({"component_id": "c", "experience_id": None, "variant_index": 1}, "experience_id"),
        ({"component_id": "c", "experience_id": "e", "variant_index": -1}, "variant_index"),
        ({"component_id": "c", "experience_id": "e", "variant_index": None}, "variant_index"),
        (
            {
                "component_id": "c",
                "experience_id": "e",
                "variant_index": 1,
                "component_type": "Widget",
            },
            "component_type",
        ),
    ],
)
def test_component_view_checks_what_component_event_checks(
    arguments: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        component_view(**arguments)
