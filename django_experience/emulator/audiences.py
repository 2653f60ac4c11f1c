"""Audience rules: validation of the config and evaluation against a profile.

Rule forms::

    {"trait": K, "equals"|"gte"|"lte"|"contains": V}    {"trait": K, "exists": true|false}
    {"page": {"path": P}}   {"page": {"pathPrefix": P}}   (has viewed a page)
    {"utm": {"campaign"|"source"|"medium"|"term"|"content": V}}
    {"event": NAME}   {"returningVisitor": true|false}
    {"location": {"countryCode"|"country"|"city"|"region"|"continent": V}}
    {"all": [rule, ...]}   {"any": [rule, ...]}   {"not": rule}
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from django_experience.emulator.errors import ConfigError

TRAIT_OPERATORS = ("equals", "gte", "lte", "contains", "exists")
UTM_KEYS = ("campaign", "source", "medium", "term", "content")
LOCATION_KEYS = ("countryCode", "country", "city", "region", "continent")
RULE_KINDS = ("trait", "page", "utm", "event", "returningVisitor", "location", "all", "any", "not")


@dataclass
class ProfileFacts:
    """What audience rules can ask about a profile."""

    traits: dict[str, Any] = field(default_factory=dict)
    viewed_paths: set[str] = field(default_factory=set)
    utm: dict[str, set[str]] = field(default_factory=dict)
    tracked_events: set[str] = field(default_factory=set)
    returning_visitor: bool = False
    location: dict[str, Any] = field(default_factory=dict)


def validate_rule(rule: object, where: str) -> None:
    """Raise ``ConfigError`` naming ``where`` when ``rule`` is not a valid audience rule."""
    if not isinstance(rule, Mapping):
        raise ConfigError(f"{where} must be an object, got {type(rule).__name__}")
    kinds = [k for k in RULE_KINDS if k in rule]
    if len(kinds) != 1:
        raise ConfigError(f"{where} must have exactly one of {', '.join(RULE_KINDS)}")
    kind = kinds[0]
    value = rule[kind]
    if kind == "trait":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.trait must be a non-empty string")
        operators = [op for op in TRAIT_OPERATORS if op in rule]
        if len(operators) != 1:
            raise ConfigError(f"{where} needs exactly one of {', '.join(TRAIT_OPERATORS)}")
        if operators[0] == "exists" and not isinstance(rule["exists"], bool):
            raise ConfigError(f"{where}.exists must be true or false")
        if operators[0] in ("gte", "lte") and not _is_comparable(rule[operators[0]]):
            raise ConfigError(f"{where}.{operators[0]} must be a number or a string")
    elif kind == "page":
        if not isinstance(value, Mapping) or len(value) != 1:
            raise ConfigError(f"{where}.page must be {{'path': P}} or {{'pathPrefix': P}}")
        (key, path), = value.items()
        if key not in ("path", "pathPrefix") or not isinstance(path, str):
            raise ConfigError(f"{where}.page must be {{'path': P}} or {{'pathPrefix': P}}")
    elif kind == "utm":
        _validate_string_map(value, UTM_KEYS, f"{where}.utm")
    elif kind == "location":
        _validate_string_map(value, LOCATION_KEYS, f"{where}.location")
    elif kind == "event":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}.event must be a non-empty string")
    elif kind == "returningVisitor":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.returningVisitor must be true or false")
    elif kind in ("all", "any"):
        if not isinstance(value, list):
            raise ConfigError(f"{where}.{kind} must be a list of rules")
        for i, sub in enumerate(value):
            validate_rule(sub, f"{where}.{kind}[{i}]")
    else:  # not
        validate_rule(value, f"{where}.not")


def _validate_string_map(value: object, keys: tuple[str, ...], where: str) -> None:
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"{where} must be an object with one of {', '.join(keys)}")
    for key, expected in value.items():
        if key not in keys:
            raise ConfigError(f"{where}.{key} is not one of {', '.join(keys)}")
        if not isinstance(expected, str):
            raise ConfigError(f"{where}.{key} must be a string")


def _is_comparable(value: object) -> bool:
    # NaN and the infinities (which Python's json reads) compare with nothing a trait holds.
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _trait(traits: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    if key in traits:
        return True, traits[key]
    current: Any = traits
    for part in key.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return False, None
        current = current[part]
    return True, current


def _equals(actual: object, expected: object) -> bool:
    # JSON semantics: true is not 1.
    if isinstance(actual, bool) or isinstance(expected, bool):
        return isinstance(actual, bool) and isinstance(expected, bool) and actual == expected
    return actual == expected


def _compare(actual: object, expected: object, operator: str) -> bool:
    if isinstance(actual, bool) or not _is_comparable(actual):
        return False
    left: Any = actual
    right: Any = expected
    if isinstance(expected, (int, float)):
        if isinstance(actual, str):
            try:
                left = float(actual)
            except ValueError:
                return False
    elif not isinstance(actual, str):
        return False
    return bool(left >= right) if operator == "gte" else bool(left <= right)


def _contains(actual: object, expected: object) -> bool:
    if isinstance(actual, str):
        return isinstance(expected, str) and expected in actual
    if isinstance(actual, list):
        return any(_equals(item, expected) for item in actual)
    return False


def matches(rule: Mapping[str, Any], facts: ProfileFacts) -> bool:
    """Whether the profile described by ``facts`` satisfies a validated rule."""
    if "trait" in rule:
        present, actual = _trait(facts.traits, rule["trait"])
        if "exists" in rule:
            return (present and actual is not None) is rule["exists"]
        if not present:
            return False
        if "equals" in rule:
            return _equals(actual, rule["equals"])
        if "contains" in rule:
            return _contains(actual, rule["contains"])
        return _compare(actual, rule["gte"] if "gte" in rule else rule["lte"],
                        "gte" if "gte" in rule else "lte")
    if "page" in rule:
        page = rule["page"]
        if "path" in page:
            return page["path"] in facts.viewed_paths
        prefix = page["pathPrefix"]
        return any(path.startswith(prefix) for path in facts.viewed_paths)
    if "utm" in rule:
        return all(value in facts.utm.get(key, ()) for key, value in rule["utm"].items())
    if "event" in rule:
        return rule["event"] in facts.tracked_events
    if "returningVisitor" in rule:
        return facts.returning_visitor is rule["returningVisitor"]
    if "location" in rule:
        for key, expected in rule["location"].items():
            actual = facts.location.get(key)
            if not isinstance(actual, str) or actual.casefold() != expected.casefold():
                return False
        return True
    if "all" in rule:
        return all(matches(sub, facts) for sub in rule["all"])
    if "any" in rule:
        return any(matches(sub, facts) for sub in rule["any"])
    return not matches(rule["not"], facts)
