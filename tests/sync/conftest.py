from __future__ import annotations

import pytest

from django_experience.emulator.handle import EmulatorHandle


@pytest.fixture
def emulator(experience_emulator: EmulatorHandle, db: None) -> EmulatorHandle:
    return experience_emulator
