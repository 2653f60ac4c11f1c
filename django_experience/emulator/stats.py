"""Request counts per API endpoint and status, and of requests received (answered or not yet);
the control API itself is never counted."""

from __future__ import annotations

import threading
from collections import defaultdict

ENDPOINTS = ("create", "update", "get", "batch", "import", "delete")
DROPPED = "dropped"


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: dict[str, dict[str, int]] = defaultdict(dict)
        self._received: dict[str, int] = defaultdict(int)

    def receive(self, endpoint: str) -> None:
        """A request arrived (before any injected latency holds it)."""
        with self._lock:
            self._received[endpoint] += 1

    def received(self, endpoint: str | None = None) -> int:
        with self._lock:
            if endpoint is None:
                return sum(self._received.values())
            return self._received.get(endpoint, 0)

    def record(self, endpoint: str, status: int | str) -> None:
        key = str(status)
        with self._lock:
            counts = self._requests[endpoint]
            counts[key] = counts.get(key, 0) + 1

    def requests(self) -> dict[str, dict[str, int]]:
        with self._lock:
            return {endpoint: dict(counts) for endpoint, counts in self._requests.items()}

    def clear(self) -> None:
        with self._lock:
            self._requests.clear()
            self._received.clear()
