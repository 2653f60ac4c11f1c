"""Experiences and audiences: the emulator's configuration, in the official SDK's shape.

::

    {"audiences": [{"id": "aud-gold", "name": "Gold",
                    "rules": {"trait": "tier", "equals": "gold"}}],
     "experiences": [{"id": "exp-hero", "type": "nt_personalization",
        "audience": {"id": "aud-gold"}, "trafficAllocation": 1, "sticky": false,
        "distribution": [{"index": 0, "start": 0, "end": 0.5},
                         {"index": 1, "start": 0.5, "end": 1}],
        "components": [
          {"type": "EntryReplacement", "baseline": {"id": "hero"}, "variants": [{"id": "hero-b"}]},
          {"type": "InlineVariable", "key": "cta", "baseline": {"value": "Buy"},
           "variants": [{"value": "Get it"}]}]}]}

``distribution`` may also be a list of weights (``[0.5, 0.5]``, Contentful's form), which become
cumulative ranges; without it, traffic is split evenly over the baseline and every variant.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django_experience.emulator.audiences import validate_rule
from django_experience.emulator.errors import ConfigError

EXPERIENCE_TYPES = ("nt_personalization", "nt_experiment")


@dataclass(frozen=True)
class Audience:
    id: str
    name: str
    rules: Mapping[str, Any]


@dataclass(frozen=True)
class DistributionRange:
    index: int
    start: float
    end: float


@dataclass(frozen=True)
class VariantEntry:
    id: str
    hidden: bool = False


@dataclass(frozen=True)
class EntryReplacement:
    baseline_id: str
    variants: tuple[VariantEntry, ...]

    def entry_for(self, index: int) -> str:
        """The entry id shown for variant ``index`` ("" when that variant is hidden)."""
        if index <= 0 or index > len(self.variants):
            return self.baseline_id
        variant = self.variants[index - 1]
        return "" if variant.hidden else variant.id


@dataclass(frozen=True)
class InlineVariable:
    key: str
    baseline_value: Any
    variant_values: tuple[Any, ...]

    def value_for(self, index: int) -> Any:
        if index <= 0 or index > len(self.variant_values):
            return self.baseline_value
        return self.variant_values[index - 1]


Component = EntryReplacement | InlineVariable


@dataclass(frozen=True)
class ExperienceConfig:
    id: str
    name: str
    type: str
    audience_id: str | None
    traffic_allocation: float
    sticky: bool  # the CMS setting; the emulator, like the API, pins from views only
    distribution: tuple[DistributionRange, ...]
    components: tuple[Component, ...]

    @functools.cached_property  # selection asks for every experience on every request
    def variant_count(self) -> int:
        """Variants besides the baseline (the most any component has)."""
        return max((_variant_count(c) for c in self.components), default=0)


@dataclass(frozen=True)
class EmulatorConfig:
    audiences: tuple[Audience, ...] = ()
    experiences: tuple[ExperienceConfig, ...] = ()
    raw: dict[str, Any] = field(default_factory=lambda: {"audiences": [], "experiences": []})

    @classmethod
    def from_json(cls, data: object) -> EmulatorConfig:
        """Validate ``data``; raise ``ConfigError`` naming the first bad field."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError(f"config must be an object, got {type(data).__name__}")
        unknown = set(data) - {"audiences", "experiences"}
        if unknown:
            raise ConfigError(f"config has unknown keys: {', '.join(sorted(unknown))}")
        audiences = tuple(
            _audience(a, f"audiences[{i}]")
            for i, a in enumerate(_list(data, "audiences", "config"))
        )
        ids = [a.id for a in audiences]
        duplicate = next((i for i in ids if ids.count(i) > 1), None)
        if duplicate is not None:
            raise ConfigError(f"audience id '{duplicate}' is defined twice")
        experiences = tuple(
            _experience(e, f"experiences[{i}]", set(ids))
            for i, e in enumerate(_list(data, "experiences", "config"))
        )
        raw = {key: data.get(key) or [] for key in ("audiences", "experiences")}
        for key, value in raw.items():
            where = _not_json_number(value, key)
            if where is not None:  # an inline variable's value, say: answered, it is not JSON
                raise ConfigError(f"{where} must be a number JSON can carry, not NaN or infinite")
        raw = json.loads(json.dumps(raw))
        return cls(audiences=audiences, experiences=experiences, raw=raw)

    @classmethod
    def from_file(cls, path: str | Path) -> EmulatorConfig:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"config file {path} is not valid JSON: {exc}") from exc
        return cls.from_json(data)


def load_config(config: EmulatorConfig | Mapping[str, Any] | str | Path | None) -> EmulatorConfig:
    """Accept a config object, a JSON-like mapping, or the path of a JSON file."""
    if isinstance(config, EmulatorConfig):
        return config
    if isinstance(config, (str, Path)):
        return EmulatorConfig.from_file(config)
    return EmulatorConfig.from_json(config)


def _list(data: Mapping[str, Any], key: str, where: str) -> list[Any]:
    value = data.get(key)
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(f"{where}.{key} must be a list")
    return value


def _string(value: object, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where} must be a non-empty string")
    return value


def _number(value: object, where: str) -> float:
    # Python's json reads NaN and Infinity; no variant can be chosen by them.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise ConfigError(f"{where} must be a number, got {value!r}")
    return float(value)


def _not_json_number(value: object, where: str) -> str | None:
    """Where in ``value`` a NaN or an infinity is (Python's json reads and writes them)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else where
    if isinstance(value, Mapping):
        items: Any = ((f"{where}.{key}", item) for key, item in value.items())
    elif isinstance(value, list):
        items = ((f"{where}[{index}]", item) for index, item in enumerate(value))
    else:
        return None
    for path, item in items:
        found = _not_json_number(item, path)
        if found is not None:
            return found
    return None


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer too large for a float
        return False


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be an object")
    return value


def _audience(data: object, where: str) -> Audience:
    obj = _object(data, where)
    if "rules" not in obj:
        raise ConfigError(f"{where}.rules is required")
    validate_rule(obj["rules"], f"{where}.rules")
    name = obj.get("name", "")
    return Audience(
        id=_string(obj.get("id"), f"{where}.id"),
        name=name if isinstance(name, str) else "",
        rules=obj["rules"],
    )


def _experience(data: object, where: str, audience_ids: set[str]) -> ExperienceConfig:
    obj = _object(data, where)
    experience_id = _string(obj.get("id"), f"{where}.id")
    kind = obj.get("type", "nt_personalization")
    if kind not in EXPERIENCE_TYPES:
        raise ConfigError(f"{where}.type must be one of {', '.join(EXPERIENCE_TYPES)}")
    audience_id: str | None = None
    audience = obj.get("audience")
    if audience is not None:
        if isinstance(audience, str):
            audience_id = audience
        else:
            audience_id = _string(_object(audience, f"{where}.audience").get("id"),
                                  f"{where}.audience.id")
        if audience_id not in audience_ids:
            raise ConfigError(f"{where}.audience.id '{audience_id}' is not a defined audience")
    traffic = _number(obj.get("trafficAllocation", 1), f"{where}.trafficAllocation")
    if not 0 <= traffic <= 1:
        raise ConfigError(f"{where}.trafficAllocation must be between 0 and 1")
    sticky = obj.get("sticky", False)
    if not isinstance(sticky, bool):
        raise ConfigError(f"{where}.sticky must be true or false")
    components = tuple(
        _component(c, f"{where}.components[{i}]")
        for i, c in enumerate(_list(obj, "components", where))
    )
    variant_count = max((_variant_count(c) for c in components), default=0)
    distribution = _distribution(obj.get("distribution"), f"{where}.distribution", variant_count)
    name = obj.get("name", "")
    return ExperienceConfig(
        id=experience_id,
        name=name if isinstance(name, str) else "",
        type=kind,
        audience_id=audience_id,
        traffic_allocation=traffic,
        sticky=sticky,
        distribution=distribution,
        components=components,
    )


def _variant_count(component: Component) -> int:
    if isinstance(component, EntryReplacement):
        return len(component.variants)
    return len(component.variant_values)


def _distribution(value: object, where: str, variant_count: int) -> tuple[DistributionRange, ...]:
    if value is None:
        weights = [1.0 / (variant_count + 1)] * (variant_count + 1)
        return _cumulative(weights)
    if not isinstance(value, list):
        raise ConfigError(f"{where} must be a list")
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        weights = [_number(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if any(w < 0 for w in weights):
            raise ConfigError(f"{where} weights must not be negative")
        return _cumulative(weights)
    ranges = []
    for i, item in enumerate(value):
        obj = _object(item, f"{where}[{i}]")
        index = obj.get("index")
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ConfigError(f"{where}[{i}].index must be a non-negative integer")
        start = _number(obj.get("start"), f"{where}[{i}].start")
        end = _number(obj.get("end"), f"{where}[{i}].end")
        if start > end:
            raise ConfigError(f"{where}[{i}].start must not exceed end")
        ranges.append(DistributionRange(index=index, start=start, end=end))
    return tuple(ranges)


def _cumulative(weights: list[float]) -> tuple[DistributionRange, ...]:
    ranges = []
    start = 0.0
    for index, weight in enumerate(weights):
        ranges.append(DistributionRange(index=index, start=start, end=start + weight))
        start += weight
    return tuple(ranges)


def _variable_value(holder: Mapping[str, Any], where: str) -> Any:
    """An inline variable's value: a string, number, boolean or object (the SDK's schema)."""
    if "value" not in holder:
        raise ConfigError(f"{where} is required")
    value = holder["value"]
    if value is None or isinstance(value, list):
        raise ConfigError(f"{where} must be a string, number, boolean or object")
    return value


def _component(data: object, where: str) -> Component:
    obj = _object(data, where)
    kind = obj.get("type")
    baseline = _object(obj.get("baseline"), f"{where}.baseline")
    variants = obj.get("variants", [])
    if not isinstance(variants, list):
        raise ConfigError(f"{where}.variants must be a list")
    if kind == "EntryReplacement":
        entries = []
        for i, variant in enumerate(variants):
            v = _object(variant, f"{where}.variants[{i}]")
            hidden = v.get("hidden", False)
            if not isinstance(hidden, bool):
                raise ConfigError(f"{where}.variants[{i}].hidden must be true or false")
            entries.append(VariantEntry(id=_string(v.get("id"), f"{where}.variants[{i}].id"),
                                        hidden=hidden))
        return EntryReplacement(
            baseline_id=_string(baseline.get("id"), f"{where}.baseline.id"),
            variants=tuple(entries),
        )
    if kind == "InlineVariable":
        values = []
        for i, variant in enumerate(variants):
            v = _object(variant, f"{where}.variants[{i}]")
            values.append(_variable_value(v, f"{where}.variants[{i}].value"))
        return InlineVariable(
            key=_string(obj.get("key"), f"{where}.key"),
            baseline_value=_variable_value(baseline, f"{where}.baseline.value"),
            variant_values=tuple(values),
        )
    raise ConfigError(f"{where}.type must be EntryReplacement or InlineVariable")
