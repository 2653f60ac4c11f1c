"""The threads that read unread early updates: one pool per process, however many first
requests start at once."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from django_experience import visitor


def test_first_requests_at_once_share_one_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    def slow_pool(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.05)  # widens the window in which another thread finds no pool yet
        pool = ThreadPoolExecutor(*args, **kwargs)
        made.append(pool)
        return pool

    monkeypatch.setattr(visitor, "ThreadPoolExecutor", slow_pool)
    monkeypatch.setattr(visitor, "_settlers", {})
    start = threading.Barrier(8)
    got: list[Any] = []

    def first_request() -> None:
        start.wait(timeout=5)
        got.append(visitor._settler())

    threads = [threading.Thread(target=first_request) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=5)
    try:
        assert len(made) == 1
        assert len(got) == 8 and all(pool is made[0] for pool in got)
    finally:
        for pool in made:
            pool.shutdown(wait=False)
