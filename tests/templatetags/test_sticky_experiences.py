"""``EXPERIENCE_STICKY_EXPERIENCES``: the experiences whose rendered variants are reported.

The API pins the variant of every component view it stores, and the browser SDK reports views
only of the experiences configured sticky. So by default the server reports none: an A/B test
that is not sticky keeps following its distribution for the visitors Django rendered.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from django_experience import conf as conf_module
from django_experience.api.events import component_event
from django_experience.conf import StickyExperiences, conf
from django_experience.emulator.handle import EmulatorHandle
from tests.templatetags.test_tags_in_requests import (
    CONFIG,
    _component_events,
    _entry,
    _event,
    _experience,
    _pieces,
    _variable,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def emulator(experience_emulator: EmulatorHandle) -> EmulatorHandle:
    experience_emulator.configure(CONFIG)
    return experience_emulator


def _everyone_to_baseline(emulator: EmulatorHandle, *, sticky: bool = False) -> None:
    """Marketing ends the tests: every visitor of the hero and the call to action gets the
    baseline from now on (unless their variant is pinned)."""
    hero = _experience("exp-hero", [_entry("hero-default", "hero-gold")], variant=0)
    cta = _experience("exp-cta", [_variable("ctaColor", "blue", "orange")], variant=0)
    hero["sticky"] = cta["sticky"] = sticky
    others = [e for e in CONFIG["experiences"] if e["id"] not in ("exp-hero", "exp-cta")]
    emulator.configure({**CONFIG, "experiences": [hero, cta, *others]})


def test_by_default_no_view_is_sent_and_nothing_is_pinned(
    emulator: EmulatorHandle, client: Client
) -> None:
    pieces = _pieces(client.get("/tags/repeat/"))
    assert (pieces["one"], pieces["cta"]) == ("gold", "orange")
    assert _component_events(emulator, client) == []
    _everyone_to_baseline(emulator)
    # The visitor Django rendered follows the experiences' new distribution like everyone.
    pieces = _pieces(client.get("/tags/repeat/"))
    assert (pieces["one"], pieces["cta"]) == ("baseline", "blue")


def test_only_the_listed_experiences_are_reported_and_pinned(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = ["exp-hero"]  # configured sticky in Contentful
    client.get("/tags/repeat/")
    assert _component_events(emulator, client) == [_event("hero-gold", "Entry", "exp-hero", 1)]
    _everyone_to_baseline(emulator)
    pieces = _pieces(client.get("/tags/repeat/"))
    assert pieces["one"] == "gold"  # pinned by the view
    assert pieces["cta"] == "blue"  # not listed: follows the distribution
    assert _pieces(Client().get("/tags/repeat/"))["one"] == "baseline"  # a new visitor


def test_all_reports_every_experience(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    client.get("/tags/repeat/")
    assert _component_events(emulator, client) == [
        _event("hero-gold", "Entry", "exp-hero", 1),
        _event("ctaColor", "Variable", "exp-cta", 1),
    ]
    _everyone_to_baseline(emulator)
    pieces = _pieces(client.get("/tags/repeat/"))
    assert (pieces["one"], pieces["cta"]) == ("gold", "orange")


def test_the_master_switch_still_turns_every_view_off(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    settings.EXPERIENCE_TRACK_COMPONENT_VIEWS = False
    client.get("/tags/repeat/")
    assert _component_events(emulator, client) == []


def _configured_sticky(emulator: EmulatorHandle) -> None:
    emulator.configure(
        {**CONFIG, "experiences": [{**e, "sticky": True} for e in CONFIG["experiences"]]}
    )


def test_an_experience_configured_sticky_but_not_listed_is_not_pinned(
    experience_emulator: EmulatorHandle, client: Client
) -> None:
    # The API pins from views only, so the emulator does too: a site that forgot to list its
    # sticky experiences sees it in its own tests, not in production.
    _configured_sticky(experience_emulator)
    assert _pieces(client.get("/tags/repeat/"))["one"] == "gold"
    assert _component_events(experience_emulator, client) == []
    _everyone_to_baseline(experience_emulator, sticky=True)
    pieces = _pieces(client.get("/tags/repeat/"))
    assert (pieces["one"], pieces["cta"]) == ("baseline", "blue")


def test_a_variant_pinned_by_the_browser_needs_no_view(
    experience_emulator: EmulatorHandle, client: Client
) -> None:
    _configured_sticky(experience_emulator)
    client.get("/tags/repeat/")
    profile_id = client.cookies[conf.COOKIE_NAME].value
    # The browser SDK reported the hero it showed: the API answers it sticky from then on.
    experience_emulator.client().update_profile(
        profile_id, [component_event("hero-gold", experience_id="exp-hero", variant_index=1)]
    )
    _everyone_to_baseline(experience_emulator, sticky=True)
    pieces = _pieces(client.get("/tags/repeat/"))
    assert (pieces["one"], pieces["cta"]) == ("gold", "blue")
    assert [e["experienceId"] for e in _component_events(experience_emulator, client)] == [
        "exp-hero"  # the browser's view; the server added none
    ]


# --- reading the setting ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, StickyExperiences()),
        ([], StickyExperiences()),
        ("__all__", StickyExperiences(every=True)),
        (" __all__ ", StickyExperiences(every=True)),
        (["__all__"], StickyExperiences(every=True)),  # the environment's form
        ("exp-a", StickyExperiences(ids=frozenset({"exp-a"}))),
        ("exp-a, exp-b", StickyExperiences(ids=frozenset({"exp-a", "exp-b"}))),
        (("exp-a", "exp-b"), StickyExperiences(ids=frozenset({"exp-a", "exp-b"}))),
        ({"exp-a"}, StickyExperiences(ids=frozenset({"exp-a"}))),
        (True, StickyExperiences()),  # a mistake (check E008): nothing is reported
        (7, StickyExperiences()),
    ],
)
def test_the_setting_is_read_like_the_other_list_settings(
    settings: Any, value: Any, expected: StickyExperiences
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = value
    sticky = conf.STICKY_EXPERIENCES
    assert sticky == expected


def test_all_is_not_read_character_by_character(settings: Any) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    sticky = conf.STICKY_EXPERIENCES
    assert sticky.every and sticky.ids == frozenset()
    assert "exp-anything" in sticky
    settings.EXPERIENCE_STICKY_EXPERIENCES = "exp-hero"
    assert "e" not in conf.STICKY_EXPERIENCES and "exp-hero" in conf.STICKY_EXPERIENCES


def test_the_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not conf.STICKY_EXPERIENCES  # the default: none
    monkeypatch.setenv("EXPERIENCE_STICKY_EXPERIENCES", "__all__")
    conf_module.reload()
    try:
        assert conf.STICKY_EXPERIENCES.every
        monkeypatch.setenv("EXPERIENCE_STICKY_EXPERIENCES", "exp-a,exp-b")
        conf_module.reload()
        assert conf.STICKY_EXPERIENCES.ids == frozenset({"exp-a", "exp-b"})
    finally:
        monkeypatch.delenv("EXPERIENCE_STICKY_EXPERIENCES")
        conf_module.reload()
