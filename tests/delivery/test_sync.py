"""EXPERIENCE_DELIVERY = "sync": sent at once in the caller's thread, failures logged not raised."""

from __future__ import annotations

import logging

import pytest

from django_experience import delivery
from tests.delivery.helpers import EVENTS_PATH, batch_requests, sent_events, track
from tests.stub_server import StubServer, error_envelope


def test_enqueue_sends_at_once(api: StubServer) -> None:
    event = track("profile-1", "Signed up", plan="pro")
    delivery.enqueue(event)
    assert [r.path for r in api.requests] == [EVENTS_PATH]
    assert sent_events(api) == [event]
    assert delivery.counters()["sent"] == 1


def test_send_sets_the_profile_id(api: StubServer) -> None:
    event = track("ignored")
    del event["anonymousId"]
    delivery.send("profile-7", event)
    assert sent_events(api)[0]["anonymousId"] == "profile-7"
    assert "anonymousId" not in event  # the caller's dict is left alone


def test_failure_is_logged_not_raised(api: StubServer, caplog: pytest.LogCaptureFixture) -> None:
    api.responder = lambda request: error_envelope(400, "ERR_INVALID_DATA", "bad event")
    with caplog.at_level(logging.ERROR, logger="django_experience.delivery"):
        delivery.enqueue(track("profile-1"))
    assert delivery.counters()["failed"] == 1
    assert delivery.counters()["sent"] == 0
    assert "gave up on 1 event" in caplog.text


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"type": "track", "event": "x"}, "no anonymousId"),
        ("not a dict", "must be a dict"),
        ({"anonymousId": "p"}, "no type"),
    ],
)
def test_invalid_events_are_refused_without_raising(
    api: StubServer, caplog: pytest.LogCaptureFixture, event: object, reason: str
) -> None:
    delivery.enqueue(event)  # type: ignore[arg-type]
    assert batch_requests(api) == []
    assert delivery.counters()["failed"] == 1
    assert reason in caplog.text


def test_unknown_sink_does_not_raise(api: StubServer, caplog: pytest.LogCaptureFixture) -> None:
    delivery.enqueue(track("p"), sink="nowhere")
    assert "No delivery sink named 'nowhere'" in caplog.text
    assert delivery.counters()["failed"] == 1
