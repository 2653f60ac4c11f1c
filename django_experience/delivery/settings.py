"""Settings of background delivery, read at access time like :mod:`django_experience.conf`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django_experience.api.retry import LONGEST_WAIT
from django_experience.conf import (
    _env,
    _float,
    _int,
    _lookup,
    _str,
    conf,
    import_callable,
    setting,
)

DROP_POLICIES = ("oldest", "newest")


def _seconds(name: str, default: float, minimum: float) -> float:
    """A duration setting, raised to ``minimum`` (NaN too) and cut to a day (``LONGEST_WAIT``):
    an infinity reads as a number ("as long as it takes"), but nothing can wait that long."""
    return min(max(minimum, _float(name, default)), LONGEST_WAIT)


class DeliverySettings:
    """``EXPERIENCE_DELIVERY_*`` settings (Django settings, then the environment, then defaults)."""

    @setting
    def BACKEND(self) -> str:
        """``thread`` (default), ``tasks`` or ``sync``."""
        return conf.DELIVERY

    @setting
    def QUEUE_SIZE(self) -> int:
        """Events held in memory at most; beyond it the drop policy decides."""
        return max(1, _int("EXPERIENCE_DELIVERY_QUEUE_SIZE", 10_000))

    @setting
    def DROP(self) -> str:
        """``oldest`` (default: keep the freshest events) or ``newest`` when the queue is full."""
        value = _str("EXPERIENCE_DELIVERY_DROP", "oldest").lower()
        if value not in DROP_POLICIES:
            raise ValueError(
                f"EXPERIENCE_DELIVERY_DROP must be one of {DROP_POLICIES}, not {value!r}"
            )
        return value

    @setting
    def FLUSH_INTERVAL(self) -> float:
        """Seconds a batch waits for more events before it is sent."""
        return _seconds("EXPERIENCE_DELIVERY_FLUSH_INTERVAL", 0.5, 0.0)

    @setting
    def BATCH_SIZE(self) -> int:
        """Events collected per round before splitting into API-sized requests."""
        return max(1, _int("EXPERIENCE_DELIVERY_BATCH_SIZE", 200))

    @setting
    def MAX_BATCH_BYTES(self) -> int:
        """Upper bound on the JSON size of one request body."""
        return max(1024, _int("EXPERIENCE_DELIVERY_MAX_BATCH_BYTES", 512 * 1024))

    @setting
    def MAX_RETRIES(self) -> int:
        """Retries of one batch after 429, 5xx or connection errors before it counts as failed."""
        return max(0, _int("EXPERIENCE_DELIVERY_MAX_RETRIES", 6))

    @setting
    def BACKOFF(self) -> float:
        """First retry delay in seconds; doubles per attempt, with jitter, capped by BACKOFF_MAX."""
        return _seconds("EXPERIENCE_DELIVERY_BACKOFF", 0.25, 0.0)

    @setting
    def BACKOFF_MAX(self) -> float:
        return _seconds("EXPERIENCE_DELIVERY_BACKOFF_MAX", 10.0, 0.0)

    @setting
    def TIMEOUT(self) -> float:
        """Seconds one delivery request may take (nobody waits for it, so longer than a page's)."""
        return _seconds("EXPERIENCE_DELIVERY_TIMEOUT", 10.0, 0.1)

    @setting
    def EXIT_TIMEOUT(self) -> float:
        """Seconds the process may spend flushing queued events when the interpreter exits."""
        return _seconds("EXPERIENCE_DELIVERY_EXIT_TIMEOUT", 5.0, 0.0)

    @setting
    def ON_ERROR(self) -> Callable[..., Any] | None:
        """Called as ``on_error(exception, payloads, sink_name)`` when a batch is given up."""
        value = _lookup("EXPERIENCE_DELIVERY_ON_ERROR", _env.str, None)
        if value in (None, ""):
            return None
        return import_callable(value)

    @setting
    def TASK_QUEUE(self) -> str:
        """Queue name of delivery tasks with the ``tasks`` backend."""
        return _str("EXPERIENCE_DELIVERY_TASK_QUEUE", "default")

    @setting
    def TASK_BACKEND(self) -> str:
        """Task backend alias with the ``tasks`` backend."""
        return _str("EXPERIENCE_DELIVERY_TASK_BACKEND", "default")


delivery_settings = DeliverySettings()
