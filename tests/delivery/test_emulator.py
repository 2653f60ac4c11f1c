"""Background delivery against the emulator, with faults on."""

from __future__ import annotations

from collections import Counter

from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from django_experience.api.events import identify_event, track_event
from django_experience.emulator.handle import EmulatorHandle


def test_every_event_arrives_once_despite_faults(
    experience_emulator: EmulatorHandle, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_BACKOFF = 0.005
    settings.EXPERIENCE_DELIVERY_BACKOFF_MAX = 0.05
    settings.EXPERIENCE_DELIVERY_MAX_RETRIES = 40
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.05
    settings.EXPERIENCE_DELIVERY_TIMEOUT = 5
    experience_emulator.faults(
        overload_rate=0.2,
        error_rate=0.15,
        drop_rate=0.15,
        malformed_rate=0.1,
        latency_ms=2,
        seed=11,
    )
    sent: Counter[str] = Counter()
    for n in range(300):
        profile_id = f"visitor-{n % 70}"
        if n < 70:
            delivery.send(profile_id, identify_event(f"user-{n}", {"n": n}))
        else:
            delivery.send(profile_id, track_event("Viewed", {"n": n}))
        sent[profile_id] += 1
    assert delivery.flush(timeout=60)
    experience_emulator.clear_faults()
    counts = delivery.counters()
    assert counts["sent"] == 300 and counts["failed"] == 0 and counts["dropped"] == 0
    assert counts["retried"] > 0  # the faults really happened
    stored = {p["id"]: len(p["events"]) for p in experience_emulator.profiles()}
    assert stored == dict(sent)  # each event exactly once, even after dropped answers


def test_sync_backend_through_the_emulator(experience_emulator: EmulatorHandle) -> None:
    delivery.send("visitor-1", track_event("Ordered", {"total": 12}))
    [profile] = experience_emulator.profiles()
    assert profile["id"] == "visitor-1"
    assert [e["event"] for e in profile["events"]] == ["Ordered"]
