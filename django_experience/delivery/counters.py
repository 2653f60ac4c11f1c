"""Process-wide delivery counters, for monitoring."""

from __future__ import annotations

import threading

COUNTER_NAMES = ("queued", "sent", "retried", "dropped", "failed")


class Counters:
    """Thread-safe monotonically increasing counts of what delivery did with events.

    ``queued``: events accepted; ``sent``: events the API accepted; ``retried``: events re-sent
    after a retryable failure (counted per attempt); ``dropped``: events discarded because the
    queue was full; ``failed``: events given up on (refused, or still failing after the retries).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def add(self, name: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._values[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._values)

    def reset(self) -> None:
        with self._lock:
            self._values = dict.fromkeys(COUNTER_NAMES, 0)

    def after_fork(self) -> None:
        # The parent's lock may have been held by another thread at fork time.
        self._lock = threading.Lock()


counters = Counters()
