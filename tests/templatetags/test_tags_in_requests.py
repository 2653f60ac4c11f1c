"""The template tags end to end: real requests through the middleware, against the emulator."""

from __future__ import annotations

import json
import re
from typing import Any, Protocol

import pytest
from django.conf import settings as django_settings
from django.template import Context, Template
from django.template.loader import get_template
from django.test import Client, override_settings

from django_experience.conf import conf
from django_experience.emulator.handle import EmulatorHandle
from tests.templatetags.views import PAGE_CONTEXT

pytestmark = pytest.mark.django_db

EVERYONE = [{"index": 0, "start": 0, "end": 0}]


def _to_variant(index: int) -> list[dict[str, Any]]:
    """A distribution that puts (practically) every visitor in variant ``index``."""
    ranges = [{"index": i, "start": 0, "end": 0} for i in range(index)]
    return [*ranges, {"index": index, "start": 0, "end": 1}]


def _experience(
    experience_id: str,
    components: list[dict[str, Any]],
    variant: int = 1,
    audience: str | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "id": experience_id,
        "name": experience_id,
        "type": "nt_personalization",
        "trafficAllocation": 1,
        "sticky": False,
        "distribution": _to_variant(variant),
        "components": components,
    }
    if audience is not None:
        config["audience"] = {"id": audience}
    return config


def _entry(baseline: str, *variants: str, hidden: bool = False) -> dict[str, Any]:
    return {
        "type": "EntryReplacement",
        "baseline": {"id": baseline},
        "variants": [{"id": v, "hidden": hidden} for v in variants],
    }


def _variable(key: str, baseline: Any, variant: Any) -> dict[str, Any]:
    return {
        "type": "InlineVariable",
        "key": key,
        "baseline": {"value": baseline},
        "variants": [{"value": variant}],
    }


CONFIG: dict[str, Any] = {
    "audiences": [{"id": "aud-gold", "name": "Gold", "rules": {"trait": "tier", "equals": "gold"}}],
    "experiences": [
        _experience("exp-hero", [_entry("hero-default", "hero-gold")]),
        _experience("exp-banner", [_entry("banner-default", "banner-a", "banner-b")], variant=2),
        _experience("exp-promo", [_entry("promo-default", "promo-hidden", hidden=True)]),
        _experience("exp-gold", [_entry("offer-default", "offer-gold")], audience="aud-gold"),
        _experience(
            "exp-cta",
            [
                _variable("ctaColor", "blue", "orange"),
                _variable("heroCopy", {"title": "Welcome"}, {"title": "<b>Sale</b> & more"}),
            ],
        ),
    ],
}

HOSTILE = '<b>Ann</b></script><script>alert("x")</script>'
TRAITS: dict[str, Any] = {
    "firstname": HOSTILE,
    "favourite_colour": "green",
    "empty": "",
    "visits": 0,
    "points": 42,
    "address": {"city": "Berlin"},
    "_secret": "hidden",
    "tier": "gold",
}

PIECE = re.compile(r"^(\w+)=\[(.*)\]$", re.MULTILINE)
JSON_BLOCK = re.compile(r'<script id="([^"]+)" type="application/json">(.*?)</script>', re.DOTALL)


class Response(Protocol):
    status_code: int
    content: bytes


def _pieces(response: Response) -> dict[str, str]:
    assert response.status_code == 200
    return dict(PIECE.findall(response.content.decode()))


@pytest.fixture
def emulator(experience_emulator: EmulatorHandle) -> EmulatorHandle:
    experience_emulator.configure(CONFIG)
    return experience_emulator


def _identified(client: Client, name: str, traits: dict[str, Any] = TRAITS) -> Response:
    return client.get(f"/tags/identify/{name}/", {"traits": json.dumps(traits)})


def _component_events(emulator: EmulatorHandle, client: Client) -> list[dict[str, Any]]:
    profile_id = client.cookies[conf.COOKIE_NAME].value
    profile = emulator.profile(profile_id)
    assert profile is not None, "the visitor's profile exists in the emulator"
    return [
        {k: e.get(k) for k in ("componentId", "componentType", "experienceId", "variantIndex")}
        for e in profile["events"]
        if e.get("type") == "component"
    ]


def _event(
    component_id: str, component_type: str, experience_id: str, index: int
) -> dict[str, Any]:
    return {
        "componentId": component_id,
        "componentType": component_type,
        "experienceId": experience_id,
        "variantIndex": index,
    }


# --- rendering ------------------------------------------------------------------------------


def test_personalize_renders_the_selected_branch_in_every_form(
    emulator: EmulatorHandle, client: Client
) -> None:
    assert _pieces(client.get("/tags/personalize/")) == {
        "literal": "gold",
        "variable": "gold",
        "index": "second",
        "variable_index": "second",
        "by_id": "B",
        "no_branch": "baseline",
        "uncovered": "baseline",
        "hidden": "",
        "audience": "baseline",
    }


def test_personalize_follows_audiences(emulator: EmulatorHandle, client: Client) -> None:
    assert _pieces(client.get("/tags/personalize/"))["audience"] == "baseline"
    assert _pieces(_identified(client, "personalize"))["audience"] == "gold offer"
    # The next request is served from the same, now gold, profile.
    assert _pieces(client.get("/tags/personalize/"))["audience"] == "gold offer"


def test_experience_entry_gives_the_selected_entry_id(
    emulator: EmulatorHandle, client: Client
) -> None:
    assert _pieces(client.get("/tags/entry/")) == {
        "literal": "hero-gold",
        "variable": "hero-gold",
        "as": "banner-b",
        "hidden": "",
        "uncovered": "nobody-personalizes-this",
    }


def test_experience_change_values_defaults_and_objects(
    emulator: EmulatorHandle, client: Client
) -> None:
    assert _pieces(client.get("/tags/change/")) == {
        "literal": "orange",
        "variable": "orange",
        "missing": "grey",
        "missing_no_default": "",
        "as": "&lt;b&gt;Sale&lt;/b&gt; &amp; more",
        "object": "{&quot;title&quot;: &quot;&lt;b&gt;Sale&lt;/b&gt; &amp; more&quot;}",
    }


def test_merge_tag_paths_fallbacks_and_escaping(emulator: EmulatorHandle, client: Client) -> None:
    escaped = (
        "&lt;b&gt;Ann&lt;/b&gt;&lt;/script&gt;&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"
    )
    assert _pieces(_identified(client, "merge")) == {
        "dotted": escaped,
        "underscore": escaped,
        "nested_underscore": "green",
        "variable": escaped,
        "missing": "friend",
        "no_fallback": "",
        "empty": "friend",
        "zero": "none",
        "number": "42",
        "object": "no address",
        "dunder": "refused",
        "private": "refused",
        "location": "your city",
        "as": f"Hello {escaped}",
        "processor": escaped,
    }


def test_merge_tag_falls_back_for_an_anonymous_visitor(
    emulator: EmulatorHandle, client: Client
) -> None:
    pieces = _pieces(client.get("/tags/merge/"))
    assert pieces["dotted"] == "friend"
    assert pieces["as"] == "Hello friend"


def test_experience_json_hands_over_the_profile_safely(
    emulator: EmulatorHandle, client: Client
) -> None:
    response = _identified(client, "json")
    html = response.content.decode()
    # The hostile trait cannot close the script element or open another one.
    assert "alert" in html
    assert '</script><script>alert("x")' not in html
    assert html.count("</script>") == 2
    blocks = dict(JSON_BLOCK.findall(html))
    assert set(blocks) == {"experience-data", "other-id"}
    data = json.loads(blocks["experience-data"])
    assert data == json.loads(blocks["other-id"])
    assert data["profile"]["id"] == client.cookies[conf.COOKIE_NAME].value
    assert data["profile"]["traits"]["firstname"] == HOSTILE
    assert {e["experienceId"]: e["variantIndex"] for e in data["experiences"]} == {
        "exp-hero": 1,
        "exp-banner": 2,
        "exp-promo": 1,
        "exp-gold": 1,
        "exp-cta": 1,
    }
    assert {c["key"]: c["value"] for c in data["changes"]} == {
        "ctaColor": "orange",
        "heroCopy": {"title": "<b>Sale</b> & more"},
    }
    assert _pieces(response)["degraded"] == "no"


# --- baseline when personalization is not available -----------------------------------------

BASELINE_PAGES: dict[str, dict[str, str]] = {
    "personalize": {
        "literal": "baseline",
        "variable": "baseline",
        "index": "baseline",
        "variable_index": "baseline",
        "by_id": "baseline",
        "no_branch": "baseline",
        "uncovered": "baseline",
        "hidden": "baseline",
        "audience": "baseline",
    },
    "entry": {
        "literal": "hero-default",
        "variable": "hero-default",
        "as": "banner-default",
        "hidden": "promo-default",
        "uncovered": "nobody-personalizes-this",
    },
    "change": {
        "literal": "grey",
        "variable": "grey",
        "missing": "grey",
        "missing_no_default": "",
        "as": "",
        "object": "",
    },
}


def _assert_baseline(pieces_by_page: dict[str, dict[str, str]]) -> None:
    assert pieces_by_page == BASELINE_PAGES


@pytest.mark.parametrize(
    "faults",
    [
        {"error_rate": 1.0, "error_status": 500},
        {"overload_rate": 1.0},
        {"malformed_rate": 1.0},
        {"drop_rate": 1.0},
    ],
    ids=["5xx", "429", "malformed", "dropped"],
)
def test_degraded_api_renders_baseline(
    emulator: EmulatorHandle, client: Client, faults: dict[str, Any]
) -> None:
    emulator.faults(**faults)
    _assert_baseline({name: _pieces(client.get(f"/tags/{name}/")) for name in BASELINE_PAGES})
    response = client.get("/tags/json/")
    blocks = dict(JSON_BLOCK.findall(response.content.decode()))
    assert json.loads(blocks["experience-data"]) == {
        "profile": None,
        "experiences": [],
        "changes": [],
    }
    assert _pieces(response)["degraded"] == "yes"


def test_without_the_middleware_tags_render_baseline(
    emulator: EmulatorHandle, client: Client
) -> None:
    middleware = [m for m in django_settings.MIDDLEWARE if "django_experience" not in m]
    with override_settings(MIDDLEWARE=middleware):
        _assert_baseline({name: _pieces(client.get(f"/tags/{name}/")) for name in BASELINE_PAGES})
        merge = _pieces(client.get("/tags/merge/"))
    assert merge["dotted"] == "friend"
    assert merge["processor"] == ""
    assert emulator.request_count() == 0


def test_outside_a_request_tags_render_baseline(emulator: EmulatorHandle) -> None:
    pieces = {
        name: dict(PIECE.findall(get_template(f"tags/{name}.html").render(PAGE_CONTEXT)))
        for name in BASELINE_PAGES
    }
    _assert_baseline(pieces)
    source = (
        '{% load experience %}{% merge_tag "traits.firstname" fallback="friend" %}|'
        "{% experience_json %}"
    )
    assert Template(source).render(Context()) == (
        'friend|<script id="experience-data" type="application/json">'
        '{"profile": null, "experiences": [], "changes": []}</script>'
    )
    assert emulator.request_count() == 0


# --- component views ------------------------------------------------------------------------


def test_component_views_are_recorded_once_per_component_per_request(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    pieces = _pieces(client.get("/tags/repeat/"))
    assert pieces == {
        "one": "gold",
        "two": "gold",
        "entry": "hero-gold",
        "cta": "orange",
        "cta_again": "orange",
        "no_branch": "baseline",
    }
    once = [
        _event("hero-gold", "Entry", "exp-hero", 1),
        _event("ctaColor", "Variable", "exp-cta", 1),
    ]
    # The banner's selected variant has no branch there: the visitor saw the baseline, so no
    # view of variant 2 is recorded.
    assert _component_events(emulator, client) == once
    client.get("/tags/repeat/")
    assert _component_events(emulator, client) == once + once


def test_hidden_variants_are_recorded_under_their_baseline(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = ["exp-promo", "exp-banner"]
    client.get("/tags/entry/")
    events = _component_events(emulator, client)
    assert _event("promo-default", "Entry", "exp-promo", 1) in events
    assert _event("banner-b", "Entry", "exp-banner", 2) in events


def test_component_views_can_be_turned_off(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    settings.EXPERIENCE_TRACK_COMPONENT_VIEWS = False  # the master switch
    assert _pieces(client.get("/tags/repeat/"))["one"] == "gold"
    assert _component_events(emulator, client) == []


def test_a_viewed_variant_stays_sticky(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = ["exp-hero"]  # configured sticky in Contentful
    assert _pieces(client.get("/tags/personalize/"))["literal"] == "gold"
    # Everyone now falls into the baseline, except a visitor whose view pinned the variant.
    hero_for_nobody = _experience("exp-hero", [_entry("hero-default", "hero-gold")], variant=0)
    emulator.configure({**CONFIG, "experiences": [hero_for_nobody, *CONFIG["experiences"][1:]]})
    assert _pieces(client.get("/tags/personalize/"))["literal"] == "gold"
    assert _pieces(Client().get("/tags/personalize/"))["literal"] == "baseline"


def test_unreachable_api_renders_baseline(emulator: EmulatorHandle, client: Client) -> None:
    emulator.stop()
    try:
        _assert_baseline({name: _pieces(client.get(f"/tags/{name}/")) for name in BASELINE_PAGES})
    finally:
        emulator.start()


def test_an_api_slower_than_the_budget_renders_baseline(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_TIMEOUT = 0.3
    emulator.faults(latency_ms=1500)
    assert _pieces(client.get("/tags/personalize/")) == BASELINE_PAGES["personalize"]


def test_the_context_processor_asks_the_api_only_when_a_template_reads_it(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    # Preflight mode sends nothing for a request that never used personalization.
    settings.EXPERIENCE_MODE = "preflight"
    assert _pieces(client.get("/tags/plain/")) == {"page": "no personalization here"}
    assert emulator.request_count() == 0
    assert _pieces(client.get("/tags/personalize/"))["literal"] == "gold"
    assert emulator.request_count() == 1


def test_preflight_mode_records_no_component_views_by_default(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_MODE = "preflight"
    assert _pieces(client.get("/tags/repeat/"))["one"] == "gold"
    assert emulator.request_count("batch") == 0
    assert emulator.stats()["events"] == 0
