"""Message ids and timestamps of built events: the fast builders keep the documented formats."""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone

import pytest

from django_experience.api import events
from django_experience.api.events import component_event, format_timestamp, message_id

_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


def test_message_ids_are_random_rfc_4122_version_4_uuids() -> None:
    ids = [message_id() for _ in range(2000)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # canonical lower-case form with dashes
        assert parsed.version == 4
        assert parsed.variant == uuid.RFC_4122
    # Every hex digit appears in the random positions: nothing is stuck.
    random_digits = {c for text in ids for c in text.replace("-", "")[20:]}
    assert random_digits == set("0123456789abcdef")


def test_events_built_now_carry_the_current_time_in_the_sdk_format() -> None:
    before = datetime.now(timezone.utc)
    event = component_event("c")
    after = datetime.now(timezone.utc)
    assert _ISO.fullmatch(event["timestamp"])
    assert event["timestamp"] == event["originalTimestamp"] == event["sentAt"]
    sent = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
    # Milliseconds are truncated, as format_timestamp truncates them.
    assert before.replace(microsecond=before.microsecond // 1000 * 1000) <= sent <= after


def test_the_cached_current_time_matches_format_timestamp(monkeypatch: pytest.MonkeyPatch) -> None:
    # 2024-05-01T12:00:00.123Z, then the same millisecond, then the next one.
    moments = iter([1714564800123_000_000, 1714564800123_900_000, 1714564800124_000_000])
    monkeypatch.setattr(time, "time_ns", lambda: next(moments))
    first, same, later = events._now(), events._now(), events._now()
    expected = format_timestamp(datetime(2024, 5, 1, 12, 0, 0, 123000, tzinfo=timezone.utc))
    assert first == same == expected == "2024-05-01T12:00:00.123Z"
    assert later == "2024-05-01T12:00:00.124Z"


def test_message_ids_ignore_the_sites_random_seed() -> None:
    import random

    random.seed(7)
    first = [message_id() for _ in range(3)]
    random.seed(7)
    assert [message_id() for _ in range(3)] != first


def test_a_forked_child_draws_other_message_ids() -> None:
    import os

    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: write its ids and leave at once
        os.write(writer, ",".join(message_id() for _ in range(5)).encode())
        os._exit(0)
    os.close(writer)
    os.waitpid(pid, 0)
    with os.fdopen(reader) as pipe:
        child = set(pipe.read().split(","))
    assert len(child) == 5 and child.isdisjoint(message_id() for _ in range(5))
