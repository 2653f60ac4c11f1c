"""A profile of a batch that is gone (merged away, of another environment) makes the API refuse
the whole batch with a 404: only that profile's events may be lost, never the others'. A deleted
profile is not gone for the batch endpoint, which upserts: its events create it anew."""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from django_experience.api.errors import NamespaceMismatch, ProfileNotFound
from django_experience.api.events import identify_event
from django_experience.emulator.handle import EmulatorHandle
from tests.delivery.helpers import batch_requests, profiles_answer, sent_events, track
from tests.stub_server import RecordedRequest, StubResponse, StubServer, error_envelope, ok_envelope

failures: list[tuple[BaseException, list[dict[str, Any]], str]] = []


def record_failure(exc: BaseException, payloads: list[dict[str, Any]], sink: str) -> None:
    failures.append((exc, payloads, sink))


LIVE = [f"live-{n}" for n in range(6)]


@pytest.fixture
def reported(settings: SettingsWrapper) -> list[tuple[BaseException, list[dict[str, Any]], str]]:
    settings.EXPERIENCE_DELIVERY_ON_ERROR = f"{__name__}.record_failure"
    settings.EXPERIENCE_DELIVERY_BACKOFF = 0.01
    settings.EXPERIENCE_DELIVERY_BACKOFF_MAX = 0.05
    failures.clear()
    return failures


def one_round(settings: SettingsWrapper) -> None:
    """Thread backend; everything enqueued before the flush goes out in one round."""
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 5
    settings.EXPERIENCE_DELIVERY_BATCH_SIZE = 1000


def deleted_profile(emulator: EmulatorHandle, profile_id: str) -> None:
    client = emulator.client()
    client.upsert_profiles([track(profile_id, "Before deletion")])
    client.delete_profile(profile_id)
    assert emulator.profile(profile_id) is None


def merged_away_profile(emulator: EmulatorHandle, profile_id: str) -> None:
    """``profile_id`` signs in as a user that already has a profile: merged into it, removed."""
    client = emulator.client()
    user_id = f"user-of-{profile_id}"
    client.upsert_profiles([identify_event(user_id, {}, anonymous_id=f"owner-of-{profile_id}")])
    client.upsert_profiles([identify_event(user_id, {}, anonymous_id=profile_id)])
    assert emulator.profile(profile_id) is None


def mixed_events(gone: list[str]) -> list[dict[str, Any]]:
    """Events of the live profiles with the gone profiles' events interleaved."""
    events = []
    for n in range(30):
        events.append(track(LIVE[n % len(LIVE)], "Viewed", n=n))
        if n % 10 == 3:
            events.extend(track(profile_id, "Stale cookie", n=n) for profile_id in gone)
    return events


def stored_events(emulator: EmulatorHandle) -> dict[str, list[str]]:
    return {p["id"]: [e["messageId"] for e in p["events"]] for p in emulator.profiles()}


def expected_live(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    expected: dict[str, list[str]] = {}
    for event in events:
        if event["anonymousId"] in LIVE:
            expected.setdefault(event["anonymousId"], []).append(event["messageId"])
    return expected


def test_thread_a_gone_profile_does_not_take_the_batch_down(
    experience_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    reported: list[tuple[BaseException, list[dict[str, Any]], str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    one_round(settings)
    merged_away_profile(experience_emulator, "gone-1")
    events = mixed_events(["gone-1"])
    stored_before = experience_emulator.stats()["events"]
    profiles_before = stored_events(experience_emulator)
    for event in events:
        delivery.enqueue(event)
    with caplog.at_level(logging.ERROR, logger="django_experience.delivery"):
        assert delivery.flush(timeout=20)

    live = expected_live(events)
    # every live event, once, in order; nothing of the gone profile's anywhere
    assert stored_events(experience_emulator) == {**profiles_before, **live}
    assert experience_emulator.stats()["events"] - stored_before == 30
    gone = [e for e in events if e["anonymousId"] == "gone-1"]
    assert delivery.counters() == {
        "queued": 33,
        "sent": 30,
        "retried": 0,
        "dropped": 0,
        "failed": 3,
    }
    [(exc, payloads, sink)] = reported
    assert isinstance(exc, ProfileNotFound)
    assert payloads == gone and sink == "experience"
    assert "refused: profile gone-1 no longer exists" in caplog.text
    # The error names the profile: its events are isolated at once, not by bisection.
    batch_statuses = experience_emulator.stats()["requests"]["batch"]
    assert batch_statuses[404] == 2
    assert delivery.flush(timeout=1)  # nothing left behind to retry


def test_thread_merged_and_foreign_profiles_and_a_deleted_one(
    experience_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    reported: list[tuple[BaseException, list[dict[str, Any]], str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    one_round(settings)
    deleted_profile(experience_emulator, "deleted")
    merged_away_profile(experience_emulator, "gone-merged")
    # "gone-foreign" exists, but in another environment.
    experience_emulator.client(environment="staging").upsert_profiles([track("gone-foreign")])
    before = {p["id"]: len(p["events"]) for p in experience_emulator.profiles()}
    gone = ["gone-merged", "gone-foreign"]
    events = mixed_events([*gone, "deleted"])
    for event in events:
        delivery.enqueue(event)
    with caplog.at_level(logging.ERROR, logger="django_experience.delivery"):
        assert delivery.flush(timeout=20)

    stored = stored_events(experience_emulator)
    assert {pid: stored[pid] for pid in LIVE} == expected_live(events)
    # The batch endpoint upserts: the deleted profile is created anew from its events.
    assert stored["deleted"] == [e["messageId"] for e in events if e["anonymousId"] == "deleted"]
    after = {p["id"]: len(p["events"]) for p in experience_emulator.profiles()}
    assert {pid: after[pid] for pid in before} == before  # nothing of the gone ones landed
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (33, 6, 0)
    by_profile = {payloads[0]["anonymousId"]: (exc, payloads) for exc, payloads, _ in reported}
    assert sorted(by_profile) == sorted(gone)
    for profile_id, (exc, payloads) in by_profile.items():
        assert [e["messageId"] for e in payloads] == [
            e["messageId"] for e in events if e["anonymousId"] == profile_id
        ]
        expected_type = NamespaceMismatch if profile_id == "gone-foreign" else ProfileNotFound
        assert isinstance(exc, expected_type)
    assert "refused: profile gone-merged no longer exists" in caplog.text
    assert "refused: profile gone-foreign belongs to another organization or environment" in (
        caplog.text
    )


def test_sync_a_gone_profile_is_reported_the_others_sent(
    experience_emulator: EmulatorHandle,
    settings: SettingsWrapper,
    reported: list[tuple[BaseException, list[dict[str, Any]], str]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings.EXPERIENCE_DELIVERY = "sync"
    merged_away_profile(experience_emulator, "gone-1")
    events = mixed_events(["gone-1"])
    profiles_before = stored_events(experience_emulator)
    with caplog.at_level(logging.ERROR, logger="django_experience.delivery"):
        for event in events:
            delivery.enqueue(event)
    assert stored_events(experience_emulator) == {**profiles_before, **expected_live(events)}
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (30, 3, 0)
    assert [payloads for _, payloads, _ in reported] == [
        [e] for e in events if e["anonymousId"] == "gone-1"
    ]
    assert all(isinstance(exc, ProfileNotFound) for exc, _, _ in reported)
    assert caplog.text.count("refused: profile gone-1 no longer exists") == 3


def test_without_a_named_profile_the_profiles_are_bisected(
    api: StubServer,
    settings: SettingsWrapper,
    reported: list[tuple[BaseException, list[dict[str, Any]], str]],
) -> None:
    """A 404 that does not say which profile: halve the profiles, never a profile's events."""
    one_round(settings)

    def refuse_gone(request: RecordedRequest) -> StubResponse:
        if any(e["anonymousId"] == "gone" for e in request.json()["events"]):
            return error_envelope(404, "ERR_PROFILE_NOT_FOUND", "Profile not found")
        return ok_envelope(profiles_answer(request))

    api.responder = refuse_gone
    profiles = [f"p{n}" for n in range(40)] + ["gone"]
    events = [track(profiles[n % len(profiles)], n=n) for n in range(160)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=20)
    requests = batch_requests(api)
    refused = [r for r in requests if any(e["anonymousId"] == "gone" for e in r.json()["events"])]
    accepted = [r for r in requests if r not in refused]
    assert sorted(e["messageId"] for r in accepted for e in r.json()["events"]) == sorted(
        e["messageId"] for e in events if e["anonymousId"] != "gone"
    )
    # One request per split level (41 profiles: 6 levels), each profile's events kept together.
    assert len(refused) <= 7
    assert len(requests) <= 14
    carried = Counter(p for r in accepted for p in {e["anonymousId"] for e in r.json()["events"]})
    assert carried == dict.fromkeys(profiles[:-1], 1)
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (157, 3, 0)
    [(exc, payloads, _)] = reported
    assert isinstance(exc, ProfileNotFound)
    assert payloads == [e for e in events if e["anonymousId"] == "gone"]
    assert len(sent_events(api)) > 160  # (the refused requests carried events too)


def test_an_unknown_environment_is_not_split(
    api: StubServer,
    settings: SettingsWrapper,
    reported: list[tuple[BaseException, list[dict[str, Any]], str]],
) -> None:
    """ERR_CONFIG_NOT_FOUND concerns every event: one request, the whole batch reported."""
    one_round(settings)
    api.responder = lambda request: error_envelope(404, "ERR_CONFIG_NOT_FOUND", "no such env")
    events = [track(f"p{n}", n=n) for n in range(20)]
    for event in events:
        delivery.enqueue(event)
    assert delivery.flush(timeout=10)
    assert len(batch_requests(api)) == 1
    assert delivery.counters()["failed"] == 20
    [(_, payloads, _)] = reported
    assert payloads == events
