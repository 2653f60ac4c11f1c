"""The bounded queue's drop policy, with a dispatcher held back so the queue fills up."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience.delivery.counters import counters
from django_experience.delivery.sinks import Payload
from django_experience.delivery.worker import Job, QueueWorker


class HeldDispatcher:
    """Records rounds; the first round blocks until released, so later jobs pile up."""

    def __init__(self) -> None:
        self.rounds: list[list[Payload]] = []
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, sink: str, payloads: list[Payload], wait: Callable[[float], bool]) -> None:
        self.rounds.append(payloads)
        self.started.set()
        assert self.release.wait(10)


@pytest.mark.parametrize(
    ("policy", "expected_after_first"),
    [("oldest", [3, 4, 5]), ("newest", [1, 2, 3])],
)
def test_full_queue_drops_by_policy(
    settings: SettingsWrapper, policy: str, expected_after_first: list[int]
) -> None:
    settings.EXPERIENCE_DELIVERY_QUEUE_SIZE = 3
    settings.EXPERIENCE_DELIVERY_DROP = policy
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0
    dispatcher = HeldDispatcher()
    worker = QueueWorker(dispatcher)
    worker.put(Job("experience", {"n": 0}))
    assert dispatcher.started.wait(5)
    for n in range(1, 6):
        worker.put(Job("experience", {"n": n}))
    assert counters.snapshot()["dropped"] == 2
    assert worker.pending() == 4  # one in flight, three queued
    dispatcher.release.set()
    assert worker.flush(timeout=5)
    sent = [payload["n"] for round_ in dispatcher.rounds for payload in round_]
    assert sent == [0, *expected_after_first]
    worker.shutdown(1)


def test_invalid_drop_policy_is_named(settings: SettingsWrapper) -> None:
    from django_experience.delivery.settings import delivery_settings

    settings.EXPERIENCE_DELIVERY_DROP = "random"
    with pytest.raises(ValueError, match="EXPERIENCE_DELIVERY_DROP"):
        _ = delivery_settings.DROP


def test_put_never_raises_through_enqueue_on_bad_settings(settings: SettingsWrapper) -> None:
    from django_experience import delivery

    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_DROP = "random"
    delivery.enqueue({"type": "track", "event": "x", "anonymousId": "p"})
    assert delivery.counters()["failed"] == 1
