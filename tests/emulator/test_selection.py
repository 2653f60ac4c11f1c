"""Variant selection: the SDK's murmur3 randoms, traffic, distribution, components, stickiness."""

from __future__ import annotations

from typing import Any

import pytest

from django_experience.emulator import EmulatorServer
from django_experience.emulator.murmur import distribution_random, murmur3_32, traffic_random
from tests.emulator.conftest import Api, event, identify, page

# Reference values printed by murmurhash-js's murmur3(text, 0).
MURMUR_REFERENCE = {"": 0, "a": 1009084850, "ab": 2613040991, "abc": 3017643002,
                    "abcd": 1139631978, "traffic-exp-1-abc": 1241246480,
                    "héllo wörld ✓ 😀": 1508659875}


@pytest.mark.parametrize(("text", "expected"), MURMUR_REFERENCE.items())
def test_murmur3_matches_murmurhash_js(text: str, expected: int) -> None:
    assert murmur3_32(text) == expected


def _experience(**overrides: Any) -> dict[str, Any]:
    experience: dict[str, Any] = {
        "id": "exp", "type": "nt_experiment",
        "components": [
            {"type": "EntryReplacement", "baseline": {"id": "hero"},
             "variants": [{"id": "hero-1"}, {"id": "hero-2", "hidden": True}]},
            {"type": "InlineVariable", "key": "cta", "baseline": {"value": "Buy"},
             "variants": [{"value": "Get it"}, {"value": {"text": "Now", "bold": True}}]},
        ],
    }
    experience.update(overrides)
    return experience


def _select(api: Api, profile_id: str) -> dict[str, Any]:
    return api.update(profile_id, page("/"))


def test_variant_index_follows_the_distribution_random(server: EmulatorServer,
                                                       api: Api) -> None:
    server.state.configure({"experiences": [_experience(distribution=[0.34, 0.33, 0.33])]})
    seen = set()
    for n in range(40):
        profile_id = f"visitor-{n}"
        data = _select(api, profile_id)
        value = distribution_random("exp", profile_id)
        index = 0 if value <= 0.34 else 1 if value <= 0.67 else 2
        seen.add(index)
        experience = data["experiences"][0]
        assert experience["variantIndex"] == index
        assert experience["variants"] == {"hero": ["hero", "hero-1", ""][index]}
        assert data["changes"] == [{
            "key": "cta", "type": "Variable",
            "value": ["Buy", "Get it", {"text": "Now", "bold": True}][index],
            "meta": {"experienceId": "exp", "variantIndex": index}}]
    assert seen == {0, 1, 2}


def test_traffic_allocation_decides_who_is_in_the_experience(server: EmulatorServer,
                                                             api: Api) -> None:
    server.state.configure({"experiences": [_experience(trafficAllocation=0.5)]})
    inside = 0
    for n in range(40):
        profile_id = f"t-{n}"
        expected = traffic_random("exp", profile_id) < 0.5
        inside += expected
        assert bool(_select(api, profile_id)["experiences"]) is expected
    assert 5 < inside < 35
    server.state.configure({"experiences": [_experience(trafficAllocation=0)]})
    assert _select(api, "t-0")["experiences"] == []


def test_no_range_holding_the_random_means_baseline(server: EmulatorServer, api: Api) -> None:
    server.state.configure({"experiences": [_experience(
        distribution=[{"index": 1, "start": 2, "end": 3}])]})
    assert _select(api, "p")["experiences"][0]["variantIndex"] == 0


def test_an_index_without_a_variant_falls_back_to_the_baseline(server: EmulatorServer,
                                                               api: Api) -> None:
    server.state.configure({"experiences": [_experience(
        distribution=[{"index": 5, "start": 0, "end": 1}])]})
    data = _select(api, "p")
    assert data["experiences"][0]["variants"] == {"hero": "hero"}
    assert data["changes"][0]["value"] == "Buy"


def test_personalizations_apply_only_to_audience_members(server: EmulatorServer,
                                                         api: Api) -> None:
    server.state.configure({
        "audiences": [{"id": "gold", "rules": {"trait": "tier", "equals": "gold"}}],
        "experiences": [_experience(type="nt_personalization", audience={"id": "gold"},
                                    distribution=[{"index": 1, "start": 0, "end": 1}])]})
    assert _select(api, "p")["experiences"] == []
    gold = api.update("p", identify("u", tier="gold"))
    assert gold["experiences"][0]["variants"] == {"hero": "hero-1"}
    assert gold["changes"][0]["value"] == "Get it"


def test_an_experience_configured_sticky_is_pinned_by_views_only(
    server: EmulatorServer, api: Api
) -> None:
    # The API stores a pin from a component view; being selected, by a create, an update, a
    # preflight or a GET, pins nothing (the SDK sends the views of sticky experiences).
    server.state.configure({"experiences": [_experience(
        sticky=True, distribution=[{"index": 1, "start": 0, "end": 1}])]})
    api.post("/profiles/s", {"events": [page()]}, params={"type": "preflight"})
    first = _select(api, "s")["experiences"][0]
    assert (first["variantIndex"], first.get("sticky")) == (1, None)
    assert "sticky" not in api.get("/profiles/s").json()["data"]["experiences"][0]
    stored = server.state.store.get("s")
    assert stored is not None and stored.sticky_variants == {}
    server.state.configure({"experiences": [_experience(
        sticky=True, distribution=[{"index": 2, "start": 0, "end": 1}])]})
    assert _select(api, "s")["experiences"][0]["variantIndex"] == 2  # followed, not pinned
    api.update("s", event("component", componentId="hero", experienceId="exp", variantIndex=2))
    server.state.configure({"experiences": [_experience(
        sticky=True, distribution=[{"index": 1, "start": 0, "end": 1}])]})
    pinned = _select(api, "s")["experiences"][0]
    assert (pinned["variantIndex"], pinned["sticky"]) == (2, True)
    assert api.get("/profiles/s").json()["data"]["profile"]["stickyVariants"] == {"exp": 2}


def test_a_component_event_pin_survives_a_distribution_change(server: EmulatorServer,
                                                              api: Api) -> None:
    server.state.configure({"experiences": [_experience(
        distribution=[{"index": 0, "start": 0, "end": 1}])]})
    # componentType is optional
    api.update("c", event("component", componentId="hero", experienceId="exp", variantIndex=1))
    server.state.configure({"experiences": [_experience(
        distribution=[{"index": 2, "start": 0, "end": 1}])]})
    experience = _select(api, "c")["experiences"][0]
    assert experience == {"experienceId": "exp", "variantIndex": 1,
                          "variants": {"hero": "hero-1"}, "sticky": True}


def test_default_distribution_splits_evenly() -> None:
    from django_experience.emulator import EmulatorConfig

    config = EmulatorConfig.from_json({"experiences": [_experience()]})
    ranges = config.experiences[0].distribution
    assert [(r.index, round(r.start, 3), round(r.end, 3)) for r in ranges] == [
        (0, 0, 0.333), (1, 0.333, 0.667), (2, 0.667, 1.0)]
