"""The ``experience_emulator`` pytest fixture, as users' own test suites use it."""

from __future__ import annotations

import pytest
from django.conf import settings

from django_experience.api import errors
from django_experience.api.events import identify_event, page_event
from django_experience.clients import experience_client
from django_experience.emulator import EmulatorHandle

HERO = {
    "audiences": [{"id": "gold", "rules": {"trait": "tier", "equals": "gold"}}],
    "experiences": [{
        "id": "exp-hero", "audience": {"id": "gold"},
        "distribution": [{"index": 1, "start": 0, "end": 1}],
        "components": [{"type": "EntryReplacement", "baseline": {"id": "hero"},
                        "variants": [{"id": "hero-gold"}]}]}],
}


def test_settings_point_at_the_emulator(experience_emulator: EmulatorHandle) -> None:
    assert experience_emulator.url == getattr(settings, "EXPERIENCE_API_URL", None)
    assert experience_emulator.organization_id == settings.EXPERIENCE_ORGANIZATION_ID
    assert experience_emulator.environment == "main"
    result = experience_client().create_profile([page_event("https://example.com/")])
    assert experience_emulator.profile(result.profile.id) is not None
    assert experience_emulator.request_count("create") == 1
    assert experience_emulator.stats()["requests"]["create"][200] == 1
    assert experience_emulator.stats()["events"] == 1
    assert experience_emulator.stats()["requests"]["batch"] == {}
    assert experience_emulator.stats()["requests"]["create"].get("500", 0) == 0
    assert experience_emulator.stats()["requests"]["create"][500] == 0  # never answered
    assert experience_emulator.stats()["requests"]["batch"][200] == 0


def test_each_test_starts_from_a_clean_emulator(experience_emulator: EmulatorHandle) -> None:
    assert experience_emulator.profiles() == []
    assert experience_emulator.request_count() == 0


def test_configure_and_client(experience_emulator: EmulatorHandle) -> None:
    experience_emulator.configure(HERO)
    client = experience_emulator.client()
    result = client.create_profile([identify_event("u1", {"tier": "gold"})])
    assert result.experiences[0].variants == {"hero": "hero-gold"}
    assert result.profile.audiences == ("gold",)


def test_faults_through_the_handle(experience_emulator: EmulatorHandle) -> None:
    experience_emulator.faults(error_rate=1.0, error_status=400)
    with pytest.raises(errors.InvalidData):
        experience_emulator.client(max_retries=0).get_profile("x")
    experience_emulator.clear_faults()
    with pytest.raises(errors.ProfileNotFound):
        experience_emulator.client().get_profile("x")


def test_outage_then_recovery(experience_emulator: EmulatorHandle) -> None:
    client = experience_emulator.client(max_retries=0, timeout=2)
    profile_id = client.create_profile([page_event("https://example.com/")]).profile.id
    experience_emulator.stop()
    with pytest.raises(errors.TransportError):
        client.get_profile(profile_id)
    experience_emulator.start()
    assert client.get_profile(profile_id).profile.id == profile_id


def test_a_stopped_emulator_is_started_again_for_the_next_test(
    experience_emulator: EmulatorHandle,
) -> None:
    experience_emulator.stop()


def test_configuration_and_faults_do_not_leak_between_tests(
    experience_emulator: EmulatorHandle,
) -> None:
    experience_emulator.configure(HERO)
    experience_emulator.faults(latency_ms=1)


def test_which_follows_and_sees_defaults(experience_emulator: EmulatorHandle) -> None:
    assert experience_emulator.server.state.config.experiences == ()
    assert not experience_emulator.server.state.faults.active
    result = experience_emulator.client().create_profile([page_event("https://example.com/")])
    assert result.profile.id


def test_destinations_is_a_dict(experience_emulator: EmulatorHandle) -> None:
    assert isinstance(experience_emulator.destinations(), dict)
