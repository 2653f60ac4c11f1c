"""Parsed results are the very objects the dataclasses' own constructors make."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from typing import Any

import pytest

from django_experience.api.types import Change, Experience, Profile, ProfileResult, Session


def _data() -> dict[str, Any]:
    return {
        "profile": {
            "id": "p1", "stableId": "s1", "random": 0.5, "audiences": ["a"],
            "traits": {"tier": "gold"}, "location": {"city": "Rome"}, "stickyVariants": {"e1": 1},
            "session": {"id": "s", "isReturningVisitor": True, "landingPage": {"path": "/"},
                        "count": 2, "activeSessionLength": 1, "averageSessionLength": 2},
        },
        "experiences": [{"experienceId": "e1", "variantIndex": 1, "variants": {"a": "b"},
                         "sticky": True}],
        "changes": [{"key": "cta", "type": "Variable", "value": "orange",
                     "meta": {"experienceId": "e1", "variantIndex": 1}}],
    }


def _rebuilt(value: Any) -> Any:
    """``value`` made again by its class's constructor, field by field (nested ones too)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: _rebuilt(getattr(value, f.name)) for f in dataclasses.fields(value)}
        return type(value)(**fields)
    if isinstance(value, tuple):
        return tuple(_rebuilt(item) for item in value)
    return value


@pytest.mark.parametrize("owned", [False, True])
def test_parsed_objects_equal_constructed_ones(owned: bool) -> None:
    result = ProfileResult.from_json(_data(), owned=owned)
    rebuilt = _rebuilt(result)
    assert result == rebuilt
    assert repr(result) == repr(rebuilt)
    pairs = [(result, rebuilt), (result.profile, rebuilt.profile),
             (result.profile.session, rebuilt.profile.session),
             (result.experiences[0], rebuilt.experiences[0]),
             (result.changes[0], rebuilt.changes[0])]
    for parsed, made in pairs:
        assert type(parsed) is type(made)
        assert list(vars(parsed).items()) == list(vars(made).items())  # same fields, same order
    assert pickle.loads(pickle.dumps(result)) == result
    assert copy.deepcopy(result) == result


def test_parsed_objects_stay_frozen() -> None:
    result = ProfileResult.from_json(_data())
    for value in (result, result.profile, result.profile.session, result.experiences[0],
                  result.changes[0]):
        with pytest.raises(dataclasses.FrozenInstanceError):
            value.raw = {}  # type: ignore[misc,union-attr]


def test_a_subclass_is_built_by_its_own_constructor() -> None:
    @dataclasses.dataclass(frozen=True)
    class Tagged(Change):
        def __post_init__(self) -> None:
            object.__setattr__(self, "seen", True)

    change = Tagged.from_json({"key": "cta", "value": 1})
    assert isinstance(change, Tagged) and change.seen  # type: ignore[attr-defined]
    assert Profile.from_json({"id": "p"}).session is None
    assert Experience.from_json({"experienceId": "e"}).variants == {}
    assert Session.from_json({}).id is None
