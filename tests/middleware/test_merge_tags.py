from __future__ import annotations

from typing import Any

import pytest

from django_experience.merge_tags import merge_tag_value, render_merge_tag, selectors

PROFILE: dict[str, Any] = {
    "id": "p-1",
    "traits": {
        "firstname": "Ada",
        "first_name": "",
        "score": 0,
        "visits": 3,
        "ratio": 2.5,
        "whole": 4.0,
        "vip": True,
        "opted": False,
        "address": {"city": "Berlin"},
        "tags": ["a", "b"],
        "_secret": "hidden",
        "constructor": "nope",
        "nested_key": "underscored",
    },
    "location": {"city": "Paris", "countryCode": "FR"},
    "audiences": ["aud-1"],
}


def test_selectors_follow_the_sdk_order() -> None:
    assert selectors("a_b_c") == ["a_b_c", "a.b_c", "a.b.c"]
    assert selectors("traits.firstname") == ["traits.firstname"]
    assert selectors("traits.first_name") == ["traits.first_name", "traits.first.name"]


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("traits.firstname", "Ada"),
        ("traits_firstname", "Ada"),
        ("location.city", "Paris"),
        ("location_city", "Paris"),
        ("location_countryCode", "FR"),
        ("traits.visits", "3"),
        ("traits.ratio", "2.5"),
        ("traits.whole", "4"),
        ("traits.vip", "true"),
        ("traits.address.city", "Berlin"),
        ("traits_address_city", "Berlin"),
        ("traits_nested_key", "underscored"),
        ("audiences.0", "aud-1"),
        ("id", "p-1"),
    ],
)
def test_paths_render_scalars(path: str, expected: str) -> None:
    assert render_merge_tag(PROFILE, path, "FB") == expected


@pytest.mark.parametrize(
    "path",
    [
        "traits.first_name",  # empty string, and traits.first.name is missing
        "traits.score",  # 0 is empty
        "traits.opted",  # false is empty
        "traits.missing",
        "traits.address",  # an object does not render
        "traits.tags",  # nor does a list
        "traits._secret",
        "traits.constructor",
        "traits.__proto__",
        "__class__",
        "traits.firstname.__class__",
        "traits..firstname",
        "",
        "audiences.5",
        "audiences.-1",
        "audiences.²",  # a digit to str.isdigit(), which int() refuses
        "audiences.\u0660",  # Arabic-Indic zero: int() takes it, JavaScript has no such index
        "traits.tags.¹",
        "x" * 300,
    ],
)
def test_empty_missing_and_refused_paths_fall_back(path: str) -> None:
    assert render_merge_tag(PROFILE, path, "FB") == "FB"


def test_no_profile_falls_back() -> None:
    assert render_merge_tag(None, "traits.firstname", "friend") == "friend"
    assert merge_tag_value({}, "traits.firstname") is None


def test_first_non_empty_selector_wins() -> None:
    data = {"a_b": "", "a": {"b": "dotted"}}
    assert render_merge_tag(data, "a_b") == "dotted"
    data = {"a_b": "flat", "a": {"b": "dotted"}}
    assert render_merge_tag(data, "a_b") == "flat"
