"""Fixtures of the middleware tests: a configured emulator and a closed breaker per test."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from django_experience.breaker import breaker
from django_experience.emulator.handle import EmulatorHandle

# Range [0, 0] for the baseline: every visitor gets variant 1.
ALWAYS_VARIANT_1 = [{"index": 0, "start": 0, "end": 0}, {"index": 1, "start": 0, "end": 1}]

CONFIG: dict[str, Any] = {
    "audiences": [
        {"id": "aud-gold", "name": "Gold", "rules": {"trait": "tier", "equals": "gold"}},
        {"id": "aud-spring", "name": "Spring", "rules": {"utm": {"campaign": "spring"}}},
    ],
    "experiences": [
        {
            "id": "exp-hero",
            "name": "Hero for everyone",
            "type": "nt_personalization",
            "trafficAllocation": 1,
            "sticky": False,
            "distribution": ALWAYS_VARIANT_1,
            "components": [
                {
                    "type": "EntryReplacement",
                    "baseline": {"id": "hero-default"},
                    "variants": [{"id": "hero-new", "hidden": False}],
                }
            ],
        },
        {
            "id": "exp-cta",
            "name": "Gold call to action",
            "type": "nt_personalization",
            "audience": {"id": "aud-gold"},
            "trafficAllocation": 1,
            "sticky": False,
            "distribution": ALWAYS_VARIANT_1,
            "components": [
                {
                    "type": "InlineVariable",
                    "key": "ctaColor",
                    "baseline": {"value": "blue"},
                    "variants": [{"value": "gold"}],
                }
            ],
        },
    ],
}


@pytest.fixture(autouse=True)
def closed_breaker() -> Iterator[None]:
    breaker.reset()
    yield
    breaker.reset()


@pytest.fixture
def emulator(experience_emulator: EmulatorHandle) -> EmulatorHandle:
    experience_emulator.configure(CONFIG)
    return experience_emulator
