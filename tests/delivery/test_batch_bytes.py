"""Batches are split by their JSON size, in order, without splitting what fits."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience.api.batching import EncodedBatch
from django_experience.api.encoding import encode, events_body
from django_experience.api.errors import InvalidData
from django_experience.delivery.sender import deliver, payload_size, split_by_bytes
from django_experience.delivery.sinks import get_sink
from tests.delivery.helpers import batch_requests, sent_events, track
from tests.stub_server import StubServer


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


# The Experience sink: each event is encoded once, batches are sized by those bytes and their
# bodies joined from them.

failures: list[tuple[BaseException, list[dict[str, Any]], str]] = []


def record_failure(exc: BaseException, payloads: list[dict[str, Any]], sink: str) -> None:
    failures.append((exc, payloads, sink))


def _planned(events: list[dict[str, Any]]) -> EncodedBatch:
    (batch,) = get_sink("experience").plan(events)
    assert isinstance(batch, EncodedBatch)
    return batch


def test_planned_events_carry_their_encoding() -> None:
    events = [track(f"p{n}", "Café ☕", n=n) for n in range(5)]
    batch = _planned(events)
    assert batch == events and batch.intact()
    assert batch.parts == [encode(event) for event in events]
    (whole,) = split_by_bytes(batch, 1024 * 1024)
    assert whole is batch


def test_encoded_batches_are_split_by_their_exact_bytes() -> None:
    events = [track(f"p{n}", "é" * (n * 37 % 200)) for n in range(40)]
    limit = 2048
    parts = split_by_bytes(_planned(events), limit)
    assert [e for part in parts for e in part] == events
    assert len(parts) > 1
    for part, following in zip(parts, [*parts[1:], None], strict=True):
        assert isinstance(part, EncodedBatch) and part.intact()
        body = events_body(part.parts)
        assert body == encode({"events": part}) and len(body) <= limit
        if following is not None:  # as full as it can be: the next event would not fit
            assert len(events_body([*part.parts, encode(following[0])])) > limit


def test_the_body_sent_is_the_encoders_and_a_changed_batch_is_encoded_anew(
    api: StubServer, settings: SettingsWrapper
) -> None:
    events = [track(f"p{n}", "Zoë", n=n) for n in range(3)]
    sink = get_sink("experience")
    batch = _planned(events)
    sink.send(batch)
    batch[1] = track("p9", "replaced")  # no longer the events its bytes encode
    assert not batch.intact()
    sink.send(batch)
    first, second = batch_requests(api)
    assert first.body == encode({"events": events})
    assert second.body == encode({"events": [events[0], batch[1], events[2]]})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "the events cannot be sent as JSON: object is not JSON"),
        ("\ud800", "the events cannot be sent as JSON: 'utf-8' codec can't encode"),  # a surrogate
    ],
)
def test_an_event_that_cannot_be_encoded_is_refused_alone_without_retries(
    api: StubServer, settings: SettingsWrapper, value: object, message: str
) -> None:
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"
    failures.clear()
    waits: list[float] = []

    def wait(seconds: float) -> bool:
        waits.append(seconds)
        return True

    good = [track(f"p{n}") for n in range(60)]  # two batches: at most 50 profiles in one
    bad = track("p70", value=value)
    sent = deliver(get_sink("experience"), [*good, bad], wait=wait)
    # Every valid event is sent; the bad one is isolated by splitting its batch, never retried.
    assert sent == 60 and sent_events(api) == good
    assert [seconds for seconds in waits if seconds] == []  # no retry waits
    [(exc, payloads, sink)] = failures
    assert isinstance(exc, InvalidData) and exc.status is None and sink == "experience"
    assert str(exc).startswith(message)
    assert payloads == [bad]
