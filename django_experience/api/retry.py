"""When and how long to wait before sending a request again.

One call has one time budget (``timeout``) that covers every attempt and every pause between
attempts: :class:`Deadline` tracks it, :class:`RetryPolicy` decides whether an error is worth
another attempt and how long to wait, and :func:`call_with_retries` runs the loop.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TypeVar

from django_experience.api.errors import ConnectionFailed, ExperienceAPIError, RequestTimeout

T = TypeVar("T")

# 429 ERR_PROFILE_OVERLOAD asks for a backoff; 503 is the transient status the official client
# retries; 408 is a server closing a connection it had not read a request from (an idle
# kept-alive one it timed out as ours arrived): the request was not acted on (RFC 9110, 15.5.9).
# Every other 4xx is the caller's mistake and every other 5xx is not known to pass.
RETRY_STATUSES: frozenset[int] = frozenset({408, 429, 503})

LONGEST_WAIT = 86400.0
"""The longest wait taken, in seconds (a day): the longest ``Retry-After`` honoured and the
longest delivery duration setting. A longer one means "not today" just as well, and not every
wait can be taken: a timeout past ``threading.TIMEOUT_MAX`` (10**14 seconds, a date in the
year 9999, an infinity) raises OverflowError in the thread that waits."""


class Deadline:
    """The moment one call's time budget runs out (monotonic clock)."""

    def __init__(self, budget: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.budget = budget
        self.at = clock() + budget

    def remaining(self) -> float:
        """Seconds left (0.0 once the budget is spent)."""
        return max(0.0, self.at - self._clock())

    @property
    def expired(self) -> bool:
        return self._clock() >= self.at


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date).

    ``None`` when the header is missing or unreadable (an infinity or NaN is); never negative,
    never more than :data:`LONGEST_WAIT`.
    """
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return min(max(0.0, seconds), LONGEST_WAIT) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=timezone.utc)
    current = now or datetime.now(timezone.utc)
    return min(max(0.0, (when - current).total_seconds()), LONGEST_WAIT)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, honouring ``Retry-After``.

    The n-th pause (n from 0) is ``min(backoff_max, backoff_base * 2**n)`` scaled by a random
    factor in ``[1 - jitter, 1]``, so concurrent clients do not retry in lockstep. A server's
    ``Retry-After`` replaces the computed pause.
    """

    max_retries: int = 2
    backoff_base: float = 0.1
    backoff_max: float = 2.0
    jitter: float = 0.5
    retry_statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries}")
        if self.backoff_base < 0 or self.backoff_max < 0:
            raise ValueError("backoff_base and backoff_max must be >= 0")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {self.jitter}")

    def is_retryable(self, error: ExperienceAPIError, *, repeatable: bool = True) -> bool:
        """Whether another attempt may succeed where this one failed.

        ``repeatable`` is False for a request the server would act on twice when sent twice
        (creating a profile: each request makes a new one): it is not sent again once the
        server may have acted on it (:attr:`ConnectionFailed.maybe_applied`).
        """
        if isinstance(error, RequestTimeout):
            return False  # the attempt was given the whole remaining budget
        if isinstance(error, ConnectionFailed):
            return repeatable or not error.maybe_applied
        return error.status is not None and error.status in self.retry_statuses

    def pause(self, retry: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``retry`` (0 for the first retry)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        ceiling = min(self.backoff_max, self.backoff_base * (2.0**retry))
        return ceiling * (1.0 - self.jitter * random.random())


def call_with_retries(
    attempt: Callable[[Deadline], T],
    policy: RetryPolicy,
    deadline: Deadline,
    *,
    repeatable: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, fails for good, or the budget or retries run out.

    ``attempt`` gets the deadline (each attempt may only use what is left of it) and raises
    :class:`ExperienceAPIError`. The last error is raised when giving up. A pause that would
    end at or after the deadline is not taken: the error is raised at once instead.
    ``repeatable``: see :meth:`RetryPolicy.is_retryable`.
    """
    retry = 0
    while True:
        try:
            return attempt(deadline)
        except ExperienceAPIError as error:
            if retry >= policy.max_retries or not policy.is_retryable(error, repeatable=repeatable):
                raise
            delay = policy.pause(retry, error.retry_after)
            if delay >= deadline.remaining():
                raise
            if delay > 0:
                sleep(delay)
            retry += 1


__all__ = [
    "LONGEST_WAIT",
    "RETRY_STATUSES",
    "Deadline",
    "RetryPolicy",
    "call_with_retries",
    "parse_retry_after",
]
