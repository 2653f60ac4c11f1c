"""Audience membership and variant selection, exactly as the official SDK computes them."""

from __future__ import annotations

from typing import Any

from django_experience.emulator.audiences import matches
from django_experience.emulator.config import (
    EmulatorConfig,
    EntryReplacement,
    ExperienceConfig,
    InlineVariable,
)
from django_experience.emulator.murmur import distribution_random, traffic_random
from django_experience.emulator.profiles import StoredProfile


def evaluate_audiences(config: EmulatorConfig, profile: StoredProfile) -> list[str]:
    facts = profile.facts()
    return [audience.id for audience in config.audiences if matches(audience.rules, facts)]


def is_experience_match(experience: ExperienceConfig, stable_id: str, audiences: list[str]) -> bool:
    """The SDK's ``isExperienceMatch``: within traffic allocation and in the audience."""
    in_traffic = experience.traffic_allocation > traffic_random(experience.id, stable_id)
    in_audience = experience.audience_id is None or experience.audience_id in audiences
    return in_traffic and in_audience


def select_distribution_index(experience: ExperienceConfig, stable_id: str) -> int:
    """The SDK's ``selectDistribution``: the first range holding the random; none -> 0."""
    value = distribution_random(experience.id, stable_id)
    for item in experience.distribution:
        if item.start <= value <= item.end:
            return item.index
    return 0


def select(
    config: EmulatorConfig, profile: StoredProfile
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``experiences`` and ``changes`` for ``profile``.

    A variant pinned by a component view event (``stickyVariants``) wins over the distribution.
    Nothing else pins: an experience configured ``sticky`` is pinned by the views the SDK (or
    ``EXPERIENCE_STICKY_EXPERIENCES``) sends for it, as on the API, not by being selected.
    """
    experiences: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for experience in config.experiences:
        if not is_experience_match(experience, profile.stable_id, profile.audiences):
            continue
        pinned = profile.sticky_variants.get(experience.id)
        if pinned is not None and not 0 <= pinned <= experience.variant_count:
            pinned = None  # a view of a variant this experience does not have (any more)
        if pinned is None:
            index = select_distribution_index(experience, profile.stable_id)
        else:
            index = pinned
        variants: dict[str, str] = {}
        for component in experience.components:
            if isinstance(component, EntryReplacement):
                variants[component.baseline_id] = component.entry_for(index)
            elif isinstance(component, InlineVariable):
                changes.append({
                    "key": component.key,
                    "type": "Variable",
                    "value": component.value_for(index),
                    "meta": {"experienceId": experience.id, "variantIndex": index},
                })
        item: dict[str, Any] = {
            "experienceId": experience.id,
            "variantIndex": index,
            "variants": variants,
        }
        if pinned is not None:
            item["sticky"] = True  # the document's example leaves the key out when it is not
        experiences.append(item)
    return experiences, changes
