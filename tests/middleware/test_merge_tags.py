from __future__ import annotations

import json
import random
import shutil
import subprocess
from typing import Any

import pytest

from django_experience.merge_tags import (
    format_scalar,
    merge_tag_value,
    render_merge_tag,
    selectors,
)

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
        "traits.tags.01",  # a property no array has, though int() reads 1 ("b")
        "audiences.00",
        "traits.tags.¹",
        "x" * 300,
    ],
)
def test_empty_missing_and_refused_paths_fall_back(path: str) -> None:
    assert render_merge_tag(PROFILE, path, "FB") == "FB"


def test_no_profile_falls_back() -> None:
    assert render_merge_tag(None, "traits.firstname", "friend") == "friend"
    assert merge_tag_value({}, "traits.firstname") is None


def test_nan_is_empty_as_in_javascript() -> None:
    # Python's json reads a bare NaN (JSON.parse refuses it); JavaScript's NaN is falsy.
    data = json.loads('{"a_b": NaN, "a": {"b": "dotted"}, "c": NaN}')
    assert render_merge_tag(data, "a_b", "FB") == "dotted"
    assert render_merge_tag(data, "c", "FB") == "FB"


def test_first_non_empty_selector_wins() -> None:
    data = {"a_b": "", "a": {"b": "dotted"}}
    assert render_merge_tag(data, "a_b") == "dotted"
    data = {"a_b": "flat", "a": {"b": "dotted"}}
    assert render_merge_tag(data, "a_b") == "flat"


# Each as node prints it: String(x), what the SDK's `${value}` gives.
JS_NUMBERS = [
    (0, "0"),
    (-0.0, "0"),
    (3, "3"),
    (4.0, "4"),
    (2.5, "2.5"),
    (-2.5, "-2.5"),
    (123.456, "123.456"),
    (0.1 + 0.2, "0.30000000000000004"),
    (2**53, "9007199254740992"),
    (2**53 + 2.0, "9007199254740994"),
    (1e16, "10000000000000000"),
    (1.5e20, "150000000000000000000"),
    (123456789012345680000.0, "123456789012345680000"),
    (1e21, "1e+21"),
    (1.5e300, "1.5e+300"),
    (1.7976931348623157e308, "1.7976931348623157e+308"),
    (0.001, "0.001"),
    (0.00001, "0.00001"),
    (1e-6, "0.000001"),
    (1.2e-6, "0.0000012"),
    (1e-7, "1e-7"),
    (-1.5e-10, "-1.5e-10"),
    (5e-324, "5e-324"),
    (float("nan"), "NaN"),
    (float("inf"), "Infinity"),
    (float("-inf"), "-Infinity"),
    # Integers past 2**53 are a double in JavaScript, printed as one.
    (2**53 + 1, "9007199254740992"),
    (10**17 + 1, "100000000000000000"),
    (10**21, "1e+21"),
    (10**22, "1e+22"),
    (-(10**22), "-1e+22"),
    (10**400, "Infinity"),
]


@pytest.mark.parametrize(("value", "js"), JS_NUMBERS)
def test_numbers_print_like_javascript(value: float, js: str) -> None:
    assert format_scalar(value) == js


def test_merge_tags_print_numbers_like_the_browser_sdk() -> None:
    traits = {"big": 1e16, "wide": 1.5e20, "small": 0.00001, "tiny": 1e-7, "huge": 10**22}
    data = {"traits": traits}
    printed = {name: render_merge_tag(data, f"traits.{name}") for name in traits}
    assert printed == {
        "big": "10000000000000000",
        "wide": "150000000000000000000",
        "small": "0.00001",
        "tiny": "1e-7",
        "huge": "1e+22",
    }


@pytest.mark.node
def test_numbers_print_like_node_itself() -> None:
    """Many more numbers, against node's own String(x) (skipped without node)."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    rng = random.Random(20240601)
    values = [
        rng.choice([1, -1]) * rng.random() * 10.0 ** rng.randint(-30, 30) for _ in range(2000)
    ]
    values += [float(10**e) for e in range(-25, 26)] + [rng.randint(0, 10**25) for _ in range(200)]
    script = (
        "const values = JSON.parse(require('fs').readFileSync(0, 'utf8'));"
        "process.stdout.write(JSON.stringify(values.map(String)));"
    )
    text = json.dumps(values)
    out = subprocess.run(
        [node, "-e", script], input=text, capture_output=True, text=True, check=True, timeout=60
    )
    expected = json.loads(out.stdout)
    assert [format_scalar(v) for v in json.loads(text)] == expected
