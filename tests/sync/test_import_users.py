"""experience_import --users: Django users with the EXPERIENCE_USER_ID/_TRAITS callables."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from pytest_django.fixtures import Settings

from django_experience.api.events import page_event
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping
from tests.sync.helpers import assert_one_profile_each, profiles_by_user, run_import


def user_id(user: Any) -> str:
    return f"user-{user.username}"


def user_traits(user: Any) -> dict[str, Any]:
    if user.username == "broken":
        raise ValueError("no traits for this one")
    return {"email": user.email, "firstName": user.first_name}


def test_users_import(emulator: EmulatorHandle, settings: Settings) -> None:
    settings.EXPERIENCE_USER_ID = f"{__name__}.user_id"
    settings.EXPERIENCE_USER_TRAITS = f"{__name__}.user_traits"
    users = get_user_model()
    for n in range(7):
        users.objects.create_user(f"u{n}", email=f"u{n}@example.com", first_name=f"Ann{n}")
    users.objects.create_user("broken")
    result = run_import("--users", "--batch-size", "3")
    assert result.code == 1  # one user's traits could not be built
    assert "line 8: rejected: ValueError: no traits for this one" in result.stderr
    assert_one_profile_each(emulator, [f"user-u{n}" for n in range(7)])
    assert profiles_by_user(emulator)["user-u2"][0]["traits"] == {
        "email": "u2@example.com",
        "firstName": "Ann2",
    }
    mapping = ProfileMapping.objects.get(external_id="user-u2")
    assert mapping.user is not None and mapping.user.username == "u2"
    assert mapping.profile_id == profiles_by_user(emulator)["user-u2"][0]["id"]


def test_users_with_a_site_mapping_keep_their_profile(
    emulator: EmulatorHandle, settings: Settings
) -> None:
    user = get_user_model().objects.create_user("signed-in", email="s@example.com")
    site_profile = emulator.client().create_profile([page_event("https://shop.example/")])
    ProfileMapping.objects.create(
        profile_id=site_profile.profile.id,
        user=user,
        organization_id=emulator.organization_id,
        environment=emulator.environment,
    )
    result = run_import("--users")
    assert result.code == 0, result.stderr
    assert [p["id"] for p in profiles_by_user(emulator)[str(user.pk)]] == [site_profile.profile.id]
    mapping = ProfileMapping.objects.get(user=user)
    assert mapping.profile_id == site_profile.profile.id
    assert mapping.external_id == str(user.pk)
    assert ProfileMapping.objects.count() == 1
