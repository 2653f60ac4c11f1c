"""The ids an import derives never change between versions: a re-run, or a run after an
upgrade, must find the profiles and message ids of the earlier runs."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from django_experience.sync.rows import MESSAGE_NAMESPACE, Row, derived_profile_id


def test_derived_profile_ids_are_the_ones_earlier_versions_made() -> None:
    # Computed by the first released implementation (HMAC-SHA256 into a version 4 UUID).
    assert derived_profile_id("a-site-secret", "org-1", "main", "crm-42") == (
        "a95e0dee-dfa8-4861-95f2-6efa039d6681"
    )
    assert derived_profile_id("a-site-secret", "org-1", "main", "Zoë 中") == (
        "c0ec2daf-84ef-4018-b49f-c89865a30570"
    )


def test_message_ids_are_the_ones_earlier_versions_made() -> None:
    row = Row(3, "crm-42", {"email": "ada@example.com", "tier": "gold", "n": 1})
    assert row.message_id() == "2db65a61-8bb6-52da-80ba-fc3a2f46a553"
    row = Row(4, "Zoë", {"name": "Zoë 中", "tags": ["a", "b"]})
    assert row.message_id() == "836f2b40-930a-55d7-aabf-698d989a3268"


@given(st.text(), st.text(), st.dictionaries(st.text(), st.text() | st.integers()))
def test_ids_are_the_uuids_the_standard_library_makes(
    secret: str, external_id: str, traits: dict[str, object]
) -> None:
    message_id = Row(1, external_id, dict(traits)).message_id()
    assert message_id == str(uuid.uuid5(MESSAGE_NAMESPACE, Row(1, external_id, traits).canonical()))
    derived = uuid.UUID(derived_profile_id(secret, "org", "main", external_id))
    assert derived.version == 4 and derived.variant == uuid.RFC_4122
