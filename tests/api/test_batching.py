"""Batch planning (generated inputs) and the one-request-per-profile-in-flight rule."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from django_experience.api import ExperienceClient
from django_experience.api.batching import plan_batches
from django_experience.api.errors import InvalidData, ServerError
from django_experience.api.scheduling import run_batches
from tests.api.payloads import batch_answer
from tests.stub_server import RecordedRequest, StubResponse, StubServer, ok_envelope

EVENT_TYPES = ["page", "track", "identify", "screen", "component"]


def make_events(spec: Sequence[tuple[int, str]]) -> list[dict[str, Any]]:
    return [
        {"anonymousId": f"anon-{profile}", "type": kind, "seq": seq}
        for seq, (profile, kind) in enumerate(spec)
    ]


def per_profile(events: Sequence[dict[str, Any]]) -> dict[str, list[int]]:
    order: dict[str, list[int]] = defaultdict(list)
    for event in events:
        order[event["anonymousId"]].append(event["seq"])
    return dict(order)


def assert_valid_plan(
    events: list[dict[str, Any]],
    batches: list[list[dict[str, Any]]],
    *,
    max_events: int,
    max_identify: int,
    max_profiles: int,
) -> None:
    for batch in batches:
        assert 0 < len(batch) <= max_events
        assert sum(e["type"] == "identify" for e in batch) <= max_identify
        assert len({e["anonymousId"] for e in batch}) <= max_profiles
        sequence = [e["seq"] for e in batch]
        assert sequence == sorted(sequence)  # original relative order inside a request
    sent = [event for batch in batches for event in batch]
    # Nothing lost, nothing duplicated ...
    assert sorted(e["seq"] for e in sent) == list(range(len(events)))
    # ... and each profile's events in their original order across requests.
    assert per_profile(sent) == per_profile(events)


event_specs = st.lists(
    st.tuples(st.integers(0, 70), st.sampled_from(EVENT_TYPES)), min_size=0, max_size=400
)


@settings(max_examples=150, deadline=None)
@given(
    spec=event_specs,
    max_events=st.integers(1, 30),
    max_identify=st.integers(1, 10),
    max_profiles=st.integers(1, 10),
)
def test_plan_respects_all_limits_and_keeps_order(
    spec: list[tuple[int, str]], max_events: int, max_identify: int, max_profiles: int
) -> None:
    events = make_events(spec)
    limits = {"max_events": max_events, "max_identify": max_identify, "max_profiles": max_profiles}
    assert_valid_plan(events, plan_batches(events, **limits), **limits)


@settings(max_examples=25, deadline=None)
@given(
    spec=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 3), st.integers(0, 200)),  # a few heavy profiles, many light
            st.sampled_from(["identify", "identify", "page", "track"]),
        ),
        min_size=150,
        max_size=1500,
    )
)
def test_plan_with_the_documented_limits(spec: list[tuple[int, str]]) -> None:
    events = make_events(spec)
    batches = plan_batches(events)
    assert_valid_plan(events, batches, max_events=200, max_identify=50, max_profiles=50)


def test_plan_packs_requests_full() -> None:
    events = make_events([(n, "identify") for n in range(500)])
    assert [len(b) for b in plan_batches(events)] == [50] * 10
    events = make_events([(n % 40, "track") for n in range(1000)])
    assert [len(b) for b in plan_batches(events)] == [200] * 5


def test_plan_refuses_limits_below_one() -> None:
    with pytest.raises(ValueError, match="max_identify"):
        plan_batches([], max_identify=0)


@pytest.mark.parametrize(
    "bad",
    [{"type": "track"}, {"type": "track", "anonymousId": ""}, {"anonymousId": 7}, "event"],
    ids=["missing", "empty", "not-a-string", "not-an-object"],
)
def test_events_without_anonymous_id_are_refused_before_sending(
    stub: StubServer, client: ExperienceClient, bad: object
) -> None:
    stub.responder = batch_answer
    events: list[Any] = make_events([(n % 60, "track") for n in range(300)])
    events.insert(250, bad)
    with pytest.raises(InvalidData, match=r"events\[250\]"):
        client.upsert_profiles(events)
    with pytest.raises(InvalidData, match=r"events\[250\]"):
        client.import_events(events)
    with pytest.raises(InvalidData, match=r"events\[250\]"):
        plan_batches(events)
    assert stub.requests == []  # not even the valid first batches


class InFlightRecorder:
    """Stub responder that records how many requests per profile are being served at once."""

    def __init__(self, hold: float = 0.02) -> None:
        self.hold = hold
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.max_per_profile: Counter[str] = Counter()
        self.total = 0
        self.max_total = 0
        self.received: list[dict[str, Any]] = []

    def __call__(self, request: RecordedRequest) -> StubResponse:
        events = request.json()["events"]
        profiles = {event["anonymousId"] for event in events}
        with self.lock:
            self.received.extend(events)
            self.total += 1
            self.max_total = max(self.max_total, self.total)
            for profile in profiles:
                self.in_flight[profile] += 1
                self.max_per_profile[profile] = max(
                    self.max_per_profile[profile], self.in_flight[profile]
                )
        time.sleep(self.hold)
        with self.lock:
            self.total -= 1
            for profile in profiles:
                self.in_flight[profile] -= 1
        return batch_answer(request)


def test_concurrent_upsert_never_has_two_requests_in_flight_for_one_profile(
    stub: StubServer, client: ExperienceClient
) -> None:
    recorder = InFlightRecorder()
    stub.responder = recorder
    # Two heavy profiles spanning several requests, many light ones, interleaved.
    spec = [(n % 3 if n % 2 else 3 + n % 150, "track") for n in range(1500)]
    spec += [(n, "identify") for n in range(100, 160)]
    events = make_events(spec)

    profiles = client.upsert_profiles(events, max_workers=6)

    assert len(stub.requests) == len(plan_batches(events))
    assert recorder.max_total > 1  # requests really ran concurrently
    assert max(recorder.max_per_profile.values()) == 1
    assert per_profile(recorder.received) == per_profile(events)
    assert sorted(e["seq"] for e in recorder.received) == list(range(len(events)))
    assert {p.id for p in profiles} == {e["anonymousId"] for e in events}


def test_concurrent_import_follows_the_same_rule(
    stub: StubServer, client: ExperienceClient
) -> None:
    recorder = InFlightRecorder(hold=0.01)
    stub.responder = recorder
    events = make_events([(n % 7 if n % 3 else 10 + n, "page") for n in range(900)])
    client.import_events(events, max_workers=4)
    assert max(recorder.max_per_profile.values()) == 1
    assert per_profile(recorder.received) == per_profile(events)


def test_a_failed_batch_stops_the_rest_and_is_raised(
    stub: StubServer, client: ExperienceClient
) -> None:
    served = []

    def fail_second(request: RecordedRequest) -> StubResponse:
        served.append(request)
        if len(served) == 2:
            return StubResponse(500, {"data": {}, "error": {"code": "ERR_INTERNAL_SERVER_ERROR"}})
        return ok_envelope({"profiles": []})

    stub.responder = fail_second
    events = make_events([(0, "track")] * 1000)  # one profile: five sequential requests
    with pytest.raises(ServerError):
        client.upsert_profiles(events, max_workers=4)
    assert len(stub.requests) == 2


@settings(max_examples=30, deadline=None)
@given(
    spec=st.lists(st.tuples(st.integers(0, 12), st.just("track")), min_size=30, max_size=150),
    workers=st.integers(2, 5),
)
def test_scheduler_sequences_batches_per_profile(spec: list[tuple[int, str]], workers: int) -> None:
    events = make_events(spec)
    batches = plan_batches(events, max_events=7, max_profiles=3)
    lock = threading.Lock()
    in_flight: Counter[str] = Counter()
    overlaps: list[str] = []
    finished: list[int] = []

    def send(batch: Sequence[dict[str, Any]]) -> int:
        profiles = {e["anonymousId"] for e in batch}
        with lock:
            for profile in profiles:
                in_flight[profile] += 1
                if in_flight[profile] > 1:
                    overlaps.append(profile)
        time.sleep(0.003)
        with lock:
            for profile in profiles:
                in_flight[profile] -= 1
            finished.extend(e["seq"] for e in batch)
        return len(batch)

    assert run_batches(batches, send, max_workers=workers) == [len(b) for b in batches]
    assert overlaps == []
    done = [events[seq] for seq in finished]
    assert per_profile(done) == per_profile(events)
