"""Batches are split by their JSON size, in order, without splitting what fits."""

from __future__ import annotations

import json
from typing import Any

from django_experience.delivery.sender import payload_size, split_by_bytes


def _event(n: int, size: int = 100) -> dict[str, Any]:
    return {"type": "track", "event": "x" * size, "anonymousId": f"p{n}"}


def test_a_batch_that_fits_is_one_part() -> None:
    batch = [_event(n) for n in range(50)]
    assert split_by_bytes(batch, 1024 * 1024) == [batch]


def test_a_batch_over_the_limit_is_split_in_order_within_it() -> None:
    batch = [_event(n) for n in range(50)]
    limit = 2048
    parts = split_by_bytes(batch, limit)
    assert [e for part in parts for e in part] == batch
    assert len(parts) > 1
    for part in parts:
        body = json.dumps({"events": part}, separators=(",", ":")).encode()
        assert len(body) <= limit


def test_a_payload_larger_than_the_limit_travels_alone() -> None:
    batch = [_event(0), _event(1, size=5000), _event(2)]
    assert split_by_bytes(batch, 2048) == [[batch[0]], [batch[1]], [batch[2]]]


def test_sizes_count_non_ascii_generously() -> None:
    event = {"type": "track", "event": "é" * 10}
    assert payload_size(event) >= len(json.dumps(event, ensure_ascii=False).encode("utf-8"))
