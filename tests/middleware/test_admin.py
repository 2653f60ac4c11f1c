"""The ProfileMapping admin: list, search, filters, live profile, refresh and delete actions."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth.models import Permission, User
from django.test import Client

from django_experience.api.events import identify_event
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_experience/profilemapping/"


@pytest.fixture
def profiles(emulator: EmulatorHandle) -> list[ProfileMapping]:
    api = emulator.client()
    mappings = []
    for name, email, tier in (("ada", "ada@example.com", "gold"), ("bob", "bob@example.org", "")):
        user = User.objects.create_user(name, email=email, password="pw")
        result = api.create_profile(
            [identify_event(f"user-{user.pk}", {"firstname": name.title(), "tier": tier})]
        )
        mappings.append(
            ProfileMapping.objects.create(
                profile_id=result.profile.id,
                user=user,
                external_id=f"user-{user.pk}",
                organization_id="test-org",
                environment="main",
            )
        )
    mappings.append(
        ProfileMapping.objects.create(
            profile_id="imported-profile", external_id="crm-9", organization_id="test-org"
        )
    )
    return mappings


@pytest.fixture
def staff(admin_client: Client) -> Client:
    return admin_client


def _limited_staff(*codenames: str) -> Client:
    user = User.objects.create_user("editor", password="pw", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def _action(client: Client, action: str, mappings: list[ProfileMapping]) -> Any:
    return client.post(
        CHANGELIST,
        {"action": action, "_selected_action": [m.pk for m in mappings]},
        follow=True,
    )


def test_changelist_search_and_filters(staff: Client, profiles: list[ProfileMapping]) -> None:
    response = staff.get(CHANGELIST)
    assert response.status_code == 200
    for mapping in profiles:
        assert mapping.profile_id in response.content.decode()
    for term, expected in (
        ("ada@example", profiles[0]),
        ("bob", profiles[1]),
        ("crm-9", profiles[2]),
        (profiles[1].profile_id, profiles[1]),
    ):
        page = staff.get(CHANGELIST, {"q": term})
        assert list(page.context["cl"].result_list) == [expected]
    anonymous = staff.get(CHANGELIST, {"user__isempty": "1"})
    assert list(anonymous.context["cl"].result_list) == [profiles[2]]
    assert staff.get(CHANGELIST, {"environment": "main"}).status_code == 200


def test_change_page_links_to_the_live_profile(
    staff: Client, profiles: list[ProfileMapping]
) -> None:
    response = staff.get(f"{CHANGELIST}{profiles[0].pk}/change/")
    assert response.status_code == 200
    assert f"{CHANGELIST}{profiles[0].pk}/live/" in response.content.decode()


def test_live_profile_shows_traits_audiences_and_experiences(
    staff: Client, profiles: list[ProfileMapping], emulator: EmulatorHandle
) -> None:
    before = emulator.request_count("get")
    response = staff.get(f"{CHANGELIST}{profiles[0].pk}/live/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "firstname" in html and "Ada" in html
    assert "aud-gold" in html
    assert "exp-hero" in html and "hero-new" in html and "exp-cta" in html
    assert emulator.request_count("get") == before + 1  # fetched on demand only


def test_live_profile_escapes_traits(staff: Client, emulator: EmulatorHandle) -> None:
    result = emulator.client().create_profile(
        [identify_event("x", {"firstname": "<script>alert(1)</script>"})]
    )
    mapping = ProfileMapping.objects.create(
        profile_id=result.profile.id, organization_id="test-org"
    )
    html = staff.get(f"{CHANGELIST}{mapping.pk}/live/").content.decode()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("outage", ["error", "refused", "missing"])
def test_live_profile_api_failure_shows_a_message(
    staff: Client, profiles: list[ProfileMapping], emulator: EmulatorHandle, outage: str
) -> None:
    mapping = profiles[0]
    if outage == "error":
        emulator.faults(error_rate=1.0, error_status=500)
    elif outage == "refused":
        emulator.stop()
    else:
        mapping = profiles[2]  # never existed in the API
    response = staff.get(f"{CHANGELIST}{mapping.pk}/live/")
    assert response.status_code == 200
    assert 'class="errornote"' in response.content.decode()


def test_live_profile_needs_view_permission(profiles: list[ProfileMapping]) -> None:
    client = _limited_staff()
    assert client.get(f"{CHANGELIST}{profiles[0].pk}/live/").status_code == 403


def test_refresh_action(
    staff: Client, profiles: list[ProfileMapping], emulator: EmulatorHandle
) -> None:
    response = _action(staff, "refresh_from_api", profiles)
    text = response.content.decode()
    assert "2 profiles refreshed" in text and "1 profile no longer exists" in text
    entries = LogEntry.objects.filter(action_flag=CHANGE)
    assert {e.object_id for e in entries} == {str(profiles[0].pk), str(profiles[1].pk)}


def test_refresh_action_during_an_outage(
    staff: Client, profiles: list[ProfileMapping], emulator: EmulatorHandle
) -> None:
    emulator.stop()
    response = _action(staff, "refresh_from_api", profiles[:2])
    assert response.status_code == 200
    assert "2 profiles could not be fetched" in response.content.decode()


def test_delete_action_deletes_remotely_and_locally(
    staff: Client, profiles: list[ProfileMapping], emulator: EmulatorHandle
) -> None:
    response = _action(staff, "delete_in_api", profiles)
    assert response.status_code == 200
    assert "3 profiles deleted in the Experience API" in response.content.decode()
    # One DELETE per profile (the third never existed remotely: 404, mapping removed anyway).
    assert emulator.request_count("delete") == 3
    assert emulator.profile(profiles[0].profile_id) is None
    assert emulator.profile(profiles[1].profile_id) is None
    assert not ProfileMapping.objects.exists()
    assert LogEntry.objects.filter(action_flag=DELETION).count() == 3


def test_delete_action_keeps_mappings_when_the_api_fails(
    staff: Client, profiles: list[ProfileMapping], emulator: EmulatorHandle
) -> None:
    emulator.faults(error_rate=1.0, error_status=500)
    response = _action(staff, "delete_in_api", profiles[:2])
    assert "2 profiles could not be deleted" in response.content.decode()
    assert ProfileMapping.objects.count() == 3
    assert not LogEntry.objects.filter(action_flag=DELETION).exists()


def test_delete_action_needs_the_delete_permission(
    profiles: list[ProfileMapping], emulator: EmulatorHandle
) -> None:
    client = _limited_staff("view_profilemapping", "change_profilemapping")
    count = ProfileMapping.objects.count()  # signing in mapped the editor as well
    deletes = emulator.request_count("delete")
    page = client.get(CHANGELIST)
    actions = dict(page.context["action_form"].fields["action"].choices)
    assert "refresh_from_api" in actions and "delete_in_api" not in actions
    client.post(CHANGELIST, {"action": "delete_in_api", "_selected_action": [profiles[0].pk]})
    assert emulator.request_count("delete") == deletes
    assert ProfileMapping.objects.count() == count
