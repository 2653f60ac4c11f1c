"""The request.experience object on its own, with an in-process source."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from django_experience import personalization as personalization_module
from django_experience.api.events import ComponentView, component_event
from django_experience.api.types import ProfileResult
from django_experience.personalization import (
    NULL_PERSONALIZATION,
    Personalization,
    SelectedVariant,
    get_experience,
)

RESULT_JSON: dict[str, Any] = {
    "profile": {
        "id": "p-1",
        "stableId": "p-1",
        "random": 0.1,
        "audiences": ["aud-gold"],
        "traits": {"firstname": "Ada"},
        "location": {"city": "Berlin"},
        "session": {"id": "s", "isReturningVisitor": False, "landingPage": {}, "count": 1},
    },
    "experiences": [
        {"experienceId": "exp-hero", "variantIndex": 1, "variants": {"hero": "hero-gold"}},
        {"experienceId": "exp-hide", "variantIndex": 1, "variants": {"promo": ""}, "sticky": True},
        {"experienceId": "exp-ctl", "variantIndex": 0, "variants": {"cta": "cta"}},
    ],
    "changes": [
        {
            "key": "ctaColor",
            "type": "Variable",
            "value": "orange",
            "meta": {"experienceId": "exp-hero", "variantIndex": 1},
        }
    ],
}


class FakeSource:
    def __init__(self, result: ProfileResult | None, fail: bool = False) -> None:
        self.result = result
        self.fail = fail
        self.resolves = 0
        self.sent: list[dict[str, Any]] = []
        self.identified: list[tuple[str, dict[str, Any]]] = []
        self.component_views = True

    def resolve(self) -> ProfileResult | None:
        self.resolves += 1
        if self.fail:
            raise RuntimeError("boom")
        return self.result

    def identify(self, user_id: str, traits: dict[str, Any]) -> ProfileResult | None:
        self.identified.append((user_id, traits))
        return self.result

    def send(self, event: dict[str, Any]) -> None:
        self.sent.append(event)

    def view(self, component: ComponentView) -> None:
        self.sent.append(
            component_event(
                component.component_id,
                experience_id=component.experience_id,
                variant_index=component.variant_index,
                component_type=component.component_type,
            )
        )

    def tracks_component_views(self) -> bool:
        return self.component_views

    def shares_profile(self) -> bool:
        return True


@pytest.fixture
def result() -> ProfileResult:
    return ProfileResult.from_json(RESULT_JSON)


def test_lazy_and_resolved_once(result: ProfileResult) -> None:
    source = FakeSource(result)
    experience = Personalization(source)
    assert source.resolves == 0 and not experience.used
    assert experience.profile is not None and experience.profile.id == "p-1"
    assert experience.degraded is False
    experience.changes  # noqa: B018
    assert source.resolves == 1 and experience.used


def test_variant_change_merge_tag_and_json(result: ProfileResult) -> None:
    experience = Personalization(FakeSource(result))
    assert experience.variant("hero") == SelectedVariant("hero", "hero-gold", "exp-hero", 1, False)
    hidden = experience.variant("promo")
    assert hidden is not None and hidden.hidden and hidden.sticky
    control = experience.variant("cta")
    assert control is not None and control.variant_index == 0 and control.entry_id == "cta"
    assert experience.variant("unknown") is None
    assert experience.change("ctaColor", "blue") == "orange"
    assert experience.change("missing", "blue") == "blue"
    assert experience.merge_tag("traits.firstname", "friend") == "Ada"
    assert experience.merge_tag("traits_lastname", "friend") == "friend"
    assert experience.to_json()["profile"]["id"] == "p-1"
    assert experience.to_json()["changes"][0]["value"] == "orange"


def test_failures_degrade_to_baseline() -> None:
    source = FakeSource(None, fail=True)
    experience = Personalization(source)
    assert experience.degraded is True
    assert experience.variant("hero") is None
    assert experience.change("ctaColor", "blue") == "blue"
    assert experience.merge_tag("traits.firstname", "friend") == "friend"
    assert experience.to_json() == {"profile": None, "experiences": [], "changes": []}
    assert source.resolves == 1


def test_null_object_answers_defaults_and_sends_nothing() -> None:
    null = get_experience(None)
    assert null is NULL_PERSONALIZATION and null.is_null and null.degraded
    assert null.profile is None and null.experiences == () and null.changes == ()
    assert null.variant("hero") is None
    assert null.change("k", 3) == 3
    assert null.merge_tag("traits.x", "fb") == "fb"
    null.track("Bought")
    null.identify("u1", {"a": 1})
    null.component_viewed("hero", experience_id="e", variant_index=1)
    assert null.used is False

    class Bare:
        pass

    assert get_experience(Bare()) is NULL_PERSONALIZATION


def test_component_views_once_per_component(result: ProfileResult) -> None:
    source = FakeSource(result)
    experience = Personalization(source)
    for _ in range(3):
        experience.component_viewed("hero", experience_id="exp-hero", variant_index=1)
    experience.component_viewed("cta", experience_id="exp-ctl", variant_index=0)
    assert [e["componentId"] for e in source.sent] == ["hero", "cta"]
    source.component_views = False
    experience.component_viewed("other", experience_id="exp-hero", variant_index=1)
    assert len(source.sent) == 2


def test_track_and_identify(result: ProfileResult) -> None:
    source = FakeSource(result)
    experience = Personalization(source)
    experience.track("Added to cart", {"sku": "x"})
    assert source.sent[0]["event"] == "Added to cart"
    experience.identify("42", {"plan": "gold"})
    assert source.identified == [("42", {"plan": "gold"})]
    assert source.resolves == 0  # identify answered with the profile: no second call
    assert experience.profile is not None


def test_reading_inside_an_event_loop_runs_off_the_loop(result: ProfileResult) -> None:
    source = FakeSource(result)

    async def view() -> str | None:
        experience = Personalization(source)
        await experience.aload()
        profile = Personalization(source).profile  # synchronous read on the loop's thread
        return None if profile is None else profile.id

    assert asyncio.run(view()) == "p-1"
    assert source.resolves == 2


def test_merge_tag_never_raises_to_a_view(
    result: ProfileResult, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    experience = Personalization(FakeSource(result))
    assert experience.merge_tag("audiences.²", "fb") == "fb"

    def broken(*args: Any) -> str:
        raise ValueError("Ada's secret")

    monkeypatch.setattr(personalization_module, "render_merge_tag", broken)
    with caplog.at_level(logging.WARNING, logger="django_experience"):
        assert experience.merge_tag("traits.firstname", "fb") == "fb"
    assert "could not be read (ValueError)" in caplog.text
    assert "secret" not in caplog.text
