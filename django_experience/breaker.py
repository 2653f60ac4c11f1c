"""A circuit breaker shared by the threads of the process.

After ``EXPERIENCE_BREAKER_THRESHOLD`` consecutive failures the breaker opens: for
``EXPERIENCE_BREAKER_COOLDOWN`` seconds no request calls the API (baseline content at once).
Then exactly one request at a time is let through as a probe; its success closes the breaker,
its failure opens it for another cool-down.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from django_experience.conf import conf

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Thread-safe breaker; threshold and cool-down are read from the settings at use time."""

    def __init__(
        self,
        threshold: Callable[[], int] | None = None,
        cooldown: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._threshold = threshold or (lambda: conf.BREAKER_THRESHOLD)
        self._cooldown = cooldown or (lambda: conf.BREAKER_COOLDOWN)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._opened_at is None:
            return CLOSED
        if self._clock() - self._opened_at < self._cooldown():
            return OPEN
        return HALF_OPEN

    def allow(self) -> bool:
        """Whether a call may go to the API now (claims the probe slot when half-open)."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == OPEN or self._probing:
                return False
            self._probing = True
            return True

    def record_success(self) -> None:
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._probing = False

    def record_failure(self) -> bool:
        """Count a failure; ``True`` when this failure (re)opened the breaker."""
        with self._lock:
            was_probe = self._probing
            self._probing = False
            self._failures += 1
            if was_probe or (self._opened_at is None and self._failures >= self._threshold()):
                self._opened_at = self._clock()
                return True
            return False

    def release(self) -> None:
        """Give the probe slot back when a call ended neither in success nor failure."""
        with self._lock:
            self._probing = False

    def reset(self) -> None:
        self.record_success()


breaker = CircuitBreaker()
"""The process-wide breaker guarding calls that render pages."""

__all__ = ["CLOSED", "HALF_OPEN", "OPEN", "CircuitBreaker", "breaker"]
