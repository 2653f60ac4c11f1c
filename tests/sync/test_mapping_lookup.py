"""The import's lookup of a batch's mappings finds what the equivalent queryset finds."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db.models import Q

from django_experience.models import ProfileMapping
from django_experience.sync import mapping_lookup
from django_experience.sync.mapping_lookup import mapped_profile_ids
from django_experience.sync.rows import Batch, Row
from django_experience.sync.targets import ExperienceTarget, TargetOptions
from tests.query_work import add_other_mappings, grew_with, query_work

pytestmark = pytest.mark.django_db

HERE = {"organization_id": "org", "environment": "main"}


def _queryset(external_ids: list[str], user_pks: list[Any]) -> set[tuple[Any, ...]]:
    owner = Q(external_id__in=external_ids) | Q(user_id__in=user_pks)
    return set(
        ProfileMapping.objects.filter(owner, **HERE).values_list(
            "external_id", "user_id", "profile_id"
        )
    )


@pytest.fixture
def mappings() -> list[User]:
    users = [User.objects.create_user(f"user-{n}") for n in range(6)]
    for n, user in enumerate(users):
        ProfileMapping.objects.create(
            profile_id=f"p-user-{n}", user=user, external_id=f"crm-{n}" if n % 2 else None, **HERE
        )
    for n in range(6, 12):
        ProfileMapping.objects.create(profile_id=f"p-crm-{n}", external_id=f"crm-{n}", **HERE)
    # The same people in another environment and another organization: never found here.
    ProfileMapping.objects.create(
        profile_id="p-elsewhere", external_id="crm-7", organization_id="org", environment="dev"
    )
    ProfileMapping.objects.create(
        profile_id="p-other-org", user=users[0], organization_id="other", environment="main"
    )
    return users


@pytest.mark.parametrize("max_listed", [400, 2])
def test_it_finds_what_the_queryset_finds(
    mappings: list[User], monkeypatch: pytest.MonkeyPatch, max_listed: int
) -> None:
    monkeypatch.setattr(mapping_lookup, "MAX_LISTED", max_listed)  # 2: several statements
    external_ids = ["crm-1", "crm-3", "crm-7", "crm-8", "crm-11", "crm-unknown"]
    user_pks = [mappings[0].pk, mappings[2].pk, mappings[3].pk, 999_999]
    found = mapped_profile_ids(external_ids, user_pks, namespace=HERE, using="default")
    expected = _queryset(external_ids, user_pks)
    assert set(found) == expected
    assert {profile for _, _, profile in found} == {
        "p-user-1", "p-user-3", "p-crm-7", "p-crm-8", "p-crm-11", "p-user-0", "p-user-2",
    }
    assert all(isinstance(user, int) for _, user, _ in found if user is not None)


def test_nothing_to_look_up_makes_no_query(django_assert_num_queries: Any) -> None:
    with django_assert_num_queries(0):
        assert mapped_profile_ids([], [], namespace=HERE, using="default") == []


def test_a_batch_is_prepared_with_the_mapped_profiles(mappings: list[User]) -> None:
    target = ExperienceTarget(TargetOptions())
    target.organization_id, target.environment = HERE["organization_id"], HERE["environment"]
    rows = [
        Row(1, "crm-7", {}),  # mapped by external id
        Row(2, "someone", {}, user_pk=mappings[2].pk),  # mapped by user
        Row(3, "crm-new", {}),  # not mapped: a derived id
    ]
    items, _ = target.prepare(Batch(0, rows=rows))
    sent = [item.payload["anonymousId"] for item in items]
    assert sent[:2] == ["p-crm-7", "p-user-2"]
    assert sent[2] not in {"p-elsewhere", "p-other-org"} and not sent[2].startswith("p-")
    assert [item.mapped for item in items] == [True, True, False]


def _lookup_steps(users: list[User]) -> int:
    with query_work() as steps:
        found = mapped_profile_ids(
            ["crm-1", "crm-7"], [users[0].pk, users[2].pk], namespace=HERE, using="default"
        )
    assert {profile for _, _, profile in found} == {"p-user-1", "p-crm-7", "p-user-0", "p-user-2"}
    return steps[0]


def test_the_lookup_does_not_search_the_mappings_it_does_not_look_for(
    mappings: list[User],
) -> None:
    # With OR between the external ids and the user pks, SQLite searched the namespace's whole
    # index: each batch of a --users import cost more the more people were mapped already.
    add_other_mappings(300, **HERE)
    few = _lookup_steps(mappings)
    add_other_mappings(3000, **HERE)
    assert not grew_with(3000, few, _lookup_steps(mappings))


def test_storing_a_mapped_batch_does_not_search_the_mappings_it_does_not_store(
    mappings: list[User],
) -> None:
    target = ExperienceTarget(TargetOptions())
    target.organization_id, target.environment = HERE["organization_id"], HERE["environment"]
    rows = [Row(1, "crm-7", {}), Row(2, "someone", {}, user_pk=mappings[2].pk)]

    def store_steps() -> int:
        items, _ = target.prepare(Batch(0, rows=rows))
        with query_work() as steps:
            target.complete(items, {item.payload["anonymousId"]: "p-new" + str(item.row.line)
                                    for item in items})
        return steps[0]

    add_other_mappings(300, **HERE)
    few = store_steps()
    add_other_mappings(3000, **HERE)
    assert not grew_with(3000, few, store_steps())
    assert ProfileMapping.objects.get(user=mappings[2]).profile_id == "p-new2"
    assert ProfileMapping.objects.get(external_id="crm-7", **HERE).profile_id == "p-new1"
