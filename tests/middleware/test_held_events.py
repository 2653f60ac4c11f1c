"""Events a request sends without an answer go to delivery together, with the response."""

from __future__ import annotations

from typing import Any

import pytest
from django.http import HttpResponse
from django.test import Client, RequestFactory

from django_experience import delivery
from django_experience.api.events import component_view, track_event
from django_experience.emulator.handle import EmulatorHandle
from django_experience.visitor import Visitor
from tests.templatetags import views
from tests.templatetags.test_tags_in_requests import CONFIG

pytestmark = pytest.mark.django_db


class DeliverySpy:
    """Records each hand-over of events to delivery (and lets it through): ``enqueue`` hands
    over through ``enqueue_many`` too, so every one passes here."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[list[str]] = []
        enqueue_many = delivery.enqueue_many

        def many(events: list[Any], **kwargs: Any) -> None:
            self.calls.append([event["type"] for event in events])
            enqueue_many(events, **kwargs)

        monkeypatch.setattr(delivery, "enqueue_many", many)


def test_a_pages_component_views_reach_delivery_in_one_hand_over(
    emulator: EmulatorHandle, client: Client, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    emulator.configure(CONFIG)  # the tag tests' experiences: two components on this page
    spy = DeliverySpy(monkeypatch)
    response = client.get("/tags/repeat/")
    assert response.status_code == 200
    assert spy.calls == [["component", "component"]]
    profile = emulator.profile(client.cookies["ntaid"].value)
    assert profile is not None
    assert [e["type"] for e in profile["events"]] == ["page", "component", "component"]


def test_an_unused_pages_view_goes_first_with_the_events_after_it(
    emulator: EmulatorHandle, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get("/mw/page/")  # a returning visitor: the cookie is set
    spy = DeliverySpy(monkeypatch)
    assert client.get("/mw/track/").status_code == 200  # a GET that only tracks
    assert spy.calls == [["page", "track"]]
    profile = emulator.profile(client.cookies["ntaid"].value)
    assert profile is not None
    assert [e["type"] for e in profile["events"]][-2:] == ["page", "track"]


def test_a_post_that_tracks_delivers_its_event(
    emulator: EmulatorHandle, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    client.get("/mw/page/")
    spy = DeliverySpy(monkeypatch)
    assert client.post("/mw/track/").status_code == 200  # not personalized: no page view
    assert spy.calls == [["track"]]
    profile = emulator.profile(client.cookies["ntaid"].value)
    assert profile is not None and profile["events"][-1]["event"] == "Added to cart"


def test_events_sent_after_the_response_go_out_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A streamed body renders its templates after the middleware has finished.
    spy = DeliverySpy(monkeypatch)
    request = RequestFactory().get("/", HTTP_COOKIE="ntaid=held-profile")
    visitor = Visitor(request, personalized=False)
    visitor.holding = True
    visitor.send(track_event("before"))
    assert spy.calls == [] and visitor.has_response_work
    visitor.finish(HttpResponse())
    assert spy.calls == [["track"]]
    visitor.send(track_event("after"))
    assert spy.calls == [["track"], ["track"]]


def test_held_component_views_keep_their_place_among_the_events(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = ["exp-hero"]
    handed: list[list[dict[str, Any]]] = []
    monkeypatch.setattr(delivery, "enqueue_many", lambda events, **kwargs: handed.append(events))
    request = RequestFactory().get("/", HTTP_COOKIE="ntaid=held-profile")
    visitor = Visitor(request, personalized=False)
    visitor.holding = True
    visitor.send(track_event("first"))
    visitor.view(component_view("hero-gold", experience_id="exp-hero", variant_index=1))
    visitor.send(track_event("last"))
    visitor.finish(HttpResponse())
    assert len(handed) == 1
    events = handed[0]
    assert [event["type"] for event in events] == ["track", "component", "track"]
    assert {event["anonymousId"] for event in events} == {"held-profile"}
    view = events[1]
    assert (view["componentId"], view["experienceId"], view["variantIndex"]) == (
        "hero-gold",
        "exp-hero",
        1,
    )


def test_a_component_view_outside_the_middleware_is_sent_at_once(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = ["exp-hero"]
    spy = DeliverySpy(monkeypatch)
    request = RequestFactory().get("/", HTTP_COOKIE="ntaid=now-profile")
    visitor = Visitor(request, personalized=False, excluded=True)
    visitor.view(component_view("hero-gold", experience_id="exp-hero", variant_index=1))
    assert spy.calls == [["component"]]


def test_a_visitor_outside_the_middleware_never_holds(monkeypatch: pytest.MonkeyPatch) -> None:
    spy = DeliverySpy(monkeypatch)
    visitor = Visitor(RequestFactory().get("/"), personalized=False, excluded=True)
    visitor.send(track_event("now"))
    assert spy.calls == [["track"]]


def test_put_many_keeps_order_and_the_drop_policy(settings: Any) -> None:
    from django_experience.delivery.worker import Job, QueueWorker

    sent: list[list[Any]] = []
    settings.EXPERIENCE_DELIVERY_QUEUE_SIZE = 3
    settings.EXPERIENCE_DELIVERY_DROP = "oldest"
    worker = QueueWorker(lambda sink, payloads, wait: sent.append(payloads))
    before = delivery.counters()
    worker.put_many([Job("experience", {"n": n}) for n in range(5)])
    assert worker.flush(5)
    assert [p["n"] for batch in sent for p in batch] == [2, 3, 4]
    after = delivery.counters()
    assert after["queued"] - before["queued"] == 5
    assert after["dropped"] - before["dropped"] == 2
    sent.clear()
    settings.EXPERIENCE_DELIVERY_DROP = "newest"
    worker.put_many([Job("experience", {"n": n}) for n in range(5)])
    assert worker.flush(5)
    assert [p["n"] for batch in sent for p in batch] == [0, 1, 2]
    worker.discard(1)


def test_no_event_is_lost_to_a_release_landing_while_it_is_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The release (the response leaving, on another thread) lands while an event is being put
    # into the held list: the event must be released or sent, never left behind.
    import threading

    received: list[str] = []
    monkeypatch.setattr(
        delivery, "enqueue_many", lambda events, **kw: received.extend(e["event"] for e in events)
    )
    visitor = Visitor(
        RequestFactory().get("/", HTTP_COOKIE="ntaid=race-profile"), personalized=False
    )
    visitor.holding = True
    release_now, released = threading.Event(), threading.Event()

    class ReleasedMidAppend(list[Any]):
        def append(self, item: Any) -> None:
            release_now.set()
            released.wait(0.3)  # the release gets its chance here, if nothing holds it off
            super().append(item)

    visitor._held = ReleasedMidAppend()

    def release() -> None:
        release_now.wait(5)
        visitor.release_held()
        released.set()

    releaser = threading.Thread(target=release)
    releaser.start()
    visitor.send(track_event("in the window"))
    releaser.join(5)
    assert received == ["in the window"]


def _held_view_and_track(method: str) -> Visitor:
    request = RequestFactory().generic(method, "/", HTTP_COOKIE="ntaid=held-profile")
    visitor = Visitor(request, personalized=False)
    visitor.holding = True
    visitor.view(component_view("hero-gold", experience_id="exp-hero", variant_index=1))
    visitor.send(track_event("Bought"))
    return visitor


@pytest.mark.parametrize(
    ("method", "status", "sent"),
    [
        ("GET", 200, ["component", "track"]),
        ("GET", 404, ["component", "track"]),  # the visitor saw that page
        ("HEAD", 200, ["track"]),  # no body: nobody saw a variant
        ("GET", 500, ["track"]),  # a template failed after the variant
        ("GET", 503, ["track"]),
    ],
)
def test_views_of_a_page_the_visitor_never_saw_are_dropped(
    monkeypatch: pytest.MonkeyPatch, settings: Any, method: str, status: int, sent: list[str]
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    spy = DeliverySpy(monkeypatch)
    _held_view_and_track(method).finish(HttpResponse(status=status))
    assert spy.calls == [sent]


def test_a_head_request_or_a_failed_page_pins_no_variant(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = "__all__"
    emulator.configure(CONFIG)
    hero = (
        '{% personalize "hero-default" %}baseline{% variant "hero-gold" %}gold{% endpersonalize %}'
    )
    views.SOURCES["hero"] = hero
    views.SOURCES["broken"] = hero + '{% include "no-such-template.html" %}'
    try:
        assert client.head("/tags/source/hero/").status_code == 200
        profile_id = client.cookies["ntaid"].value
        assert client.get("/mw/track/").status_code == 200  # a track event: the profile exists
        failing = Client(raise_request_exception=False)
        failing.cookies["ntaid"] = profile_id
        assert failing.get("/tags/source/broken/").status_code == 500
        profile = emulator.profile(profile_id)
        assert profile is not None
        assert [e for e in profile["events"] if e["type"] == "component"] == []
        assert client.get("/tags/source/hero/").content == b"gold"  # a page the visitor sees
        profile = emulator.profile(profile_id)
        assert profile is not None
        assert [e["type"] for e in profile["events"]].count("component") == 1
    finally:
        views.SOURCES.clear()
