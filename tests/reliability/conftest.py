"""Fixtures of the reliability suite: the emulator with one experience, a closed breaker."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from django_experience import delivery
from django_experience.breaker import breaker
from django_experience.emulator.handle import EmulatorHandle

EVERYONE_VARIANT_1 = [{"index": 0, "start": 0, "end": 0}, {"index": 1, "start": 0, "end": 1}]

CONFIG: dict[str, Any] = {
    "audiences": [],
    "experiences": [
        {
            "id": "exp-hero",
            "name": "Hero",
            "type": "nt_personalization",
            "trafficAllocation": 1,
            "sticky": False,
            "distribution": EVERYONE_VARIANT_1,
            "components": [
                {
                    "type": "EntryReplacement",
                    "baseline": {"id": "hero-default"},
                    "variants": [{"id": "hero-new", "hidden": False}],
                },
                {
                    "type": "InlineVariable",
                    "key": "ctaColor",
                    "baseline": {"value": "blue"},
                    "variants": [{"value": "orange"}],
                },
            ],
        }
    ],
}

BASELINE = ("hero=[baseline]", "cta=[blue]", "name=[friend]", "entry=[hero-default]")
PERSONALIZED = ("hero=[new]", "cta=[orange]", "entry=[hero-new]")


@pytest.fixture(autouse=True)
def reliability_site(settings: Any) -> Iterator[None]:
    settings.ROOT_URLCONF = "tests.reliability.urls"
    settings.EXPERIENCE_USER_TRAITS = "tests.reliability.views.user_traits"
    breaker.reset()
    yield
    breaker.reset()
    delivery.reset()


@pytest.fixture
def emulator(experience_emulator: EmulatorHandle) -> EmulatorHandle:
    experience_emulator.configure(CONFIG)
    return experience_emulator
