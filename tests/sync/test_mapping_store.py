"""How an import batch's mappings are stored once the API answered: one insert for the people
new to the site, the existing mappings updated, a mapping made meanwhile left as it is.

The batch is prepared and completed through the Experience target itself, with the answer the
API would give (every row kept its profile): what is under test is the database side.
"""

from __future__ import annotations

import datetime

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from django_experience.models import ProfileMapping
from django_experience.sync.rows import Batch, Row
from django_experience.sync.targets import ExperienceTarget, Item, TargetOptions

pytestmark = pytest.mark.django_db


def _prepared(*rows: Row) -> tuple[ExperienceTarget, list[Item]]:
    target = ExperienceTarget(TargetOptions())
    items, rejected = target.prepare(Batch(0, rows=list(rows)))
    assert rejected == []
    return target, items


def _answer(items: list[Item], **renamed: str) -> dict[str, str]:
    """Each row's profile as the batch endpoint answers it (``renamed``: by external id)."""
    return {
        item.payload["anonymousId"]: renamed.get(item.row.external_id, item.payload["anonymousId"])
        for item in items
    }


def test_new_mappings_carry_the_namespace_the_user_and_the_time_they_were_stored() -> None:
    ada = User.objects.create_user("ada")
    before = timezone.now()
    target, items = _prepared(Row(1, "crm-1", {}), Row(2, "crm-2", {}, user_pk=ada.pk))
    target.complete(items, _answer(items))
    after = timezone.now()
    stored = {m.external_id: m for m in ProfileMapping.objects.all()}
    assert set(stored) == {"crm-1", "crm-2"}
    for item in items:
        mapping = stored[item.row.external_id]
        assert mapping.profile_id == item.payload["anonymousId"]
        assert (mapping.organization_id, mapping.environment) == ("test-org", "main")
        for moment in (mapping.created_at, mapping.updated_at, mapping.last_seen_at):
            assert moment is not None and before <= moment <= after
            assert moment.tzinfo is not None
    assert stored["crm-1"].user_id is None and stored["crm-2"].user_id == ada.pk


def test_existing_mappings_take_the_profile_the_api_answered_with() -> None:
    old = ProfileMapping.objects.create(
        profile_id="old-profile", external_id="crm-1", organization_id="test-org",
        environment="main", last_seen_at=timezone.now() - datetime.timedelta(days=3),
    )
    target, items = _prepared(Row(1, "crm-1", {}), Row(2, "crm-2", {}))
    assert items[0].payload["anonymousId"] == "old-profile"  # sent on the mapped profile
    target.complete(items, _answer(items, **{"crm-1": "merged-profile"}))
    old.refresh_from_db()
    assert old.profile_id == "merged-profile"
    assert ProfileMapping.objects.get(external_id="crm-2").profile_id == (
        items[1].payload["anonymousId"]
    )


def test_a_mapping_made_while_the_batch_was_sent_is_kept_and_the_others_stored() -> None:
    target, items = _prepared(Row(1, "crm-1", {}), Row(2, "crm-2", {}), Row(3, "crm-3", {}))
    # A sign-in mapped crm-2 while the batch was on its way: the insert clashes.
    ProfileMapping.objects.create(
        profile_id="signed-in-profile", external_id="crm-2", organization_id="test-org",
        environment="main",
    )
    target.complete(items, _answer(items))
    stored = dict(ProfileMapping.objects.values_list("external_id", "profile_id"))
    assert stored == {
        "crm-1": items[0].payload["anonymousId"],
        "crm-2": "signed-in-profile",
        "crm-3": items[2].payload["anonymousId"],
    }
