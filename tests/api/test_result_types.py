"""Typed results: tolerant of missing optional fields, precise about the place of a wrong shape."""

from __future__ import annotations

from typing import Any

import pytest

from django_experience.api.types import ProfileResult


def _answer(**profile: Any) -> dict[str, Any]:
    return {
        "profile": {"id": "p1", **profile},
        "experiences": [{"experienceId": "e1", "variantIndex": 1, "variants": {"a": "b"}}],
        "changes": [{"key": "cta", "type": "Variable", "value": "orange", "meta": {}}],
    }


def test_a_minimal_answer_parses_with_defaults() -> None:
    result = ProfileResult.from_json({"profile": {"id": "p1"}})
    profile = result.profile
    assert (profile.id, profile.stable_id, profile.random) == ("p1", "p1", 0.0)
    assert (profile.audiences, profile.traits, profile.location) == ((), {}, {})
    assert profile.session is None and profile.sticky_variants == {}
    assert (result.experiences, result.changes) == ((), ())


def test_an_owned_answer_is_kept_not_copied() -> None:
    # The client's own parse of JSON it just decoded: the same values, the answer's objects.
    data = _answer(traits={"tier": "gold"}, location={"city": "Rome"},
                   session={"id": "s", "landingPage": {"path": "/"}})
    owned = ProfileResult.from_json(data, owned=True)
    assert owned == ProfileResult.from_json(data)
    assert owned.to_json() == ProfileResult.from_json(data).to_json()
    profile = data["profile"]
    assert owned.profile.raw is profile and owned.profile.traits is profile["traits"]
    assert owned.profile.location is profile["location"]
    assert owned.profile.session is not None
    assert owned.profile.session.landing_page is profile["session"]["landingPage"]
    assert owned.experiences[0].raw is data["experiences"][0]
    assert owned.experiences[0].variants is data["experiences"][0]["variants"]
    assert owned.changes[0].raw is data["changes"][0]
    assert owned.changes[0].meta is data["changes"][0]["meta"]


def test_parsed_values_are_copies_of_the_answer() -> None:
    data = _answer(traits={"tier": "gold"}, audiences=["a1"], stickyVariants={"e1": 1},
                   session={"id": "s", "count": 2, "isReturningVisitor": True})
    result = ProfileResult.from_json(data)
    data["profile"]["traits"]["tier"] = "changed"
    data["experiences"][0]["variants"]["a"] = "changed"
    assert result.profile.traits == {"tier": "gold"}
    assert result.experiences[0].variants == {"a": "b"}
    assert result.profile.audiences == ("a1",)
    assert result.profile.sticky_variants == {"e1": 1}
    assert result.profile.session is not None and result.profile.session.count == 2
    assert result.changes[0].value == "orange"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"profile": {"id": 1}}, "data.profile.id must be a string"),
        ({"profile": {"id": "p", "stableId": 2}}, "data.profile.stableId must be a string"),
        ({"profile": {"id": "p", "random": "x"}}, "data.profile.random must be a number"),
        ({"profile": {"id": "p", "audiences": "a"}}, "data.profile.audiences must be a list"),
        ({"profile": {"id": "p", "audiences": [1]}}, r"data.profile.audiences\[\] must be a str"),
        ({"profile": {"id": "p", "traits": []}}, "data.profile.traits must be an object"),
        ({"profile": {"id": "p", "stickyVariants": {"e": "x"}}},
         "data.profile.stickyVariants must be a number"),
        ({"profile": {"id": "p", "session": {"count": "x"}}},
         "data.profile.session.count must be a number"),
        ({"profile": {"id": "p"}, "experiences": [{"experienceId": "e", "variants": {"a": 1}}]},
         r"data.experiences\[0\].variants.a must be a string"),
        ({"profile": {"id": "p"}, "experiences": [{}, {"experienceId": 3}]},
         r"data.experiences\[0\].experienceId must be a string"),
        ({"profile": {"id": "p"}, "changes": [{"key": "k", "meta": 5}]},
         r"data.changes\[0\].meta must be an object"),
        ({"profile": {"id": "p"}, "changes": {}}, "data.changes must be a list"),
        ({"profile": None}, "data.profile must be an object"),
    ],
)
@pytest.mark.parametrize("owned", [False, True])
def test_a_wrong_shape_names_its_place(data: dict[str, Any], message: str, owned: bool) -> None:
    with pytest.raises(ValueError, match=message):
        ProfileResult.from_json(data, owned=owned)
