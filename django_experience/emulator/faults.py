"""Faults the emulator injects into Experience API answers, for outage tests and benchmarks."""

from __future__ import annotations

import random
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

from django_experience.emulator.errors import ConfigError

RATES = ("error_rate", "overload_rate", "drop_rate", "malformed_rate")


@dataclass(frozen=True)
class Faults:
    """What can go wrong, and how often (rates are probabilities from 0 to 1).

    - ``latency_ms``: wait before answering.
    - ``error_rate`` + ``error_status``: answer ``error_status`` (a 5xx by default).
    - ``overload_rate``: answer 429 ``ERR_PROFILE_OVERLOAD`` (with ``Retry-After`` when
      ``retry_after`` is set, in seconds).
    - ``drop_rate``: close the connection without answering.
    - ``malformed_rate``: answer 200 with a body that is not JSON.
    - ``slow_body_ms``: send the headers at once, then trickle the body over this long.
    """

    latency_ms: float = 0
    error_rate: float = 0.0
    error_status: int = 500
    overload_rate: float = 0.0
    retry_after: float | None = None
    drop_rate: float = 0.0
    malformed_rate: float = 0.0
    slow_body_ms: float = 0
    seed: int | None = None

    @classmethod
    def from_json(cls, data: object) -> Faults:
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise ConfigError("faults must be an object")
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ConfigError(f"unknown faults: {', '.join(sorted(map(str, unknown)))}")
        values: dict[str, Any] = {}
        for key, value in data.items():
            if key == "retry_after" and value is None:
                values[key] = None
                continue
            if key == "seed":
                if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ConfigError("seed must be an integer")
                values[key] = value
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{key} must be a number")
            if value < 0:
                raise ConfigError(f"{key} must not be negative")
            if key in RATES and value > 1:
                raise ConfigError(f"{key} must be between 0 and 1")
            values[key] = value
        if "error_status" in values:
            status = values["error_status"]
            if not isinstance(status, int) or not 400 <= status <= 599:
                raise ConfigError("error_status must be an HTTP error status (400-599)")
        if values.get("latency_ms", 0) > 600_000 or values.get("slow_body_ms", 0) > 600_000:
            raise ConfigError("latency_ms and slow_body_ms must be at most 600000")
        return cls(**values)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self != Faults(seed=self.seed)


class FaultDice:
    """Thread-safe random draws for the fault rates (seedable for repeatable runs)."""

    def __init__(self, seed: int | None = None) -> None:
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def roll(self, rate: float) -> bool:
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        with self._lock:
            return self._random.random() < rate
