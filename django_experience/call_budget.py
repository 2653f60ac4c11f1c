"""How many Experience API calls one admin action (or command) may make.

An action calls the API once per selected row, in the request. While the API is down or slow,
a page of 100 rows would wait 100 times ``EXPERIENCE_TIMEOUT`` (seconds each), and the worker
would be killed with a gateway error long before the page came back. So an action stops
calling after a few failures in a row (the next call would most likely fail the same way) or
once its time is up, and tells how many rows it did not try. Running it again tries them.
"""

from __future__ import annotations

import math
import time

FAILURES_IN_A_ROW = 3
# Seconds of calls per action: below the 30 s after which WSGI servers and proxies commonly
# give up on a request. A call started in time may end up to EXPERIENCE_TIMEOUT later.
SECONDS = 20.0


class CallBudget:
    """Asked before each call (:meth:`allows`), told after it (:meth:`record`)."""

    def __init__(self, *, time_limited: bool = True) -> None:
        # Without a time limit (a command run by cron): only the failures in a row stop it.
        self._deadline = time.monotonic() + SECONDS if time_limited else math.inf
        self._failures_in_a_row = 0
        self.exhausted_by: str | None = None  # "failures" or "time", once it allows no more

    def allows(self) -> bool:
        if self.exhausted_by is None:
            if self._failures_in_a_row >= FAILURES_IN_A_ROW:
                self.exhausted_by = "failures"
            elif time.monotonic() >= self._deadline:
                self.exhausted_by = "time"
        return self.exhausted_by is None

    def record(self, *, api_failed: bool) -> None:
        """After a call: ``api_failed`` when the API failed it (an answer such as "not found"
        is no failure of the API)."""
        self._failures_in_a_row = self._failures_in_a_row + 1 if api_failed else 0


__all__ = ["FAILURES_IN_A_ROW", "SECONDS", "CallBudget"]
