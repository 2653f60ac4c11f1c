"""A view whose pages keep using personalization gets its page's update sent before it runs:
the API answers while the view works."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.test import Client

from django_experience import delivery, middleware
from django_experience.api import resolver
from django_experience.emulator.handle import EmulatorHandle
from tests.middleware import views

pytestmark = pytest.mark.django_db

PROBE = "/mw/prefetch-probe/"


@pytest.fixture(autouse=True)
def no_probe() -> Iterator[None]:
    yield  # (the views' learned streaks are cleared for every test: tests/conftest.py)
    views.API_CALLED.clear()


def _eventually(condition: Callable[[], bool], seconds: float) -> bool:
    ends = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > ends:
            return False
        time.sleep(0.005)
    return True


@pytest.fixture
def api_called(emulator: EmulatorHandle) -> Callable[[], None]:
    """Arms the probe for the next request: did its update reach the API before the view?"""

    def arm() -> None:
        before = emulator.request_count("update")
        views.API_CALLED[:] = [
            lambda: _eventually(lambda: emulator.request_count("update") > before, 0.5)
        ]

    return arm


def _page_events(emulator: EmulatorHandle, client: Client) -> int:
    profile = emulator.profile(client.cookies["ntaid"].value)
    assert profile is not None
    return sum(1 for event in profile["events"] if event["type"] == "page")


def test_after_a_few_personalized_pages_the_update_goes_out_before_the_view(
    emulator: EmulatorHandle, client: Client, api_called: Callable[[], None]
) -> None:
    client.get("/mw/page/")  # a returning visitor from now on
    seen = []
    for _ in range(middleware.PREFETCH_AFTER + 2):
        api_called()
        answer = client.get(PROBE).json()
        assert answer["degraded"] is False and answer["hero"] == "hero-new"
        seen.append(answer["called_before_view"])
    assert seen == [False] * middleware.PREFETCH_AFTER + [True, True]
    assert _page_events(emulator, client) == 1 + middleware.PREFETCH_AFTER + 2  # each once


def test_the_view_s_own_time_does_not_count_against_the_budget(
    emulator: EmulatorHandle, client: Client, settings: Any, api_called: Callable[[], None]
) -> None:
    settings.EXPERIENCE_TIMEOUT = 0.3
    client.get("/mw/page/")
    for _ in range(middleware.PREFETCH_AFTER):
        client.get(PROBE)
    emulator.faults(latency_ms=100)
    # The update was sent 0.4 s before the page reads it, beyond the 0.3 s budget: only the
    # wait for its answer counts, and there is none left to wait.
    api_called()
    answer = client.get(PROBE, {"work": "0.4"}).json()
    assert answer["called_before_view"] is True  # the early update, not a call made late
    assert answer["degraded"] is False and answer["hero"] == "hero-new"


def test_an_early_update_the_page_never_reads_stores_its_page_view_once(
    emulator: EmulatorHandle, client: Client, api_called: Callable[[], None]
) -> None:
    client.get("/mw/page/")
    for _ in range(middleware.PREFETCH_AFTER):
        client.get(PROBE)
    before = _page_events(emulator, client)
    api_called()
    assert client.get(PROBE, {"plain": 1}).json()["called_before_view"] is True
    assert _eventually(lambda: _page_events(emulator, client) == before + 1, 2.0)
    delivery.flush(5)
    assert _page_events(emulator, client) == before + 1  # not also through delivery
    api_called()
    # A page that did not personalize starts the count again: the next ones wait their turn.
    assert client.get(PROBE).json()["called_before_view"] is False


def test_an_early_update_whose_sending_spent_the_budget_reports_what_it_met(
    emulator: EmulatorHandle,
    client: Client,
    settings: Any,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A host name that never resolves takes the whole budget while the update is sent early:
    the page is served baseline and its one failure line names the timeout, not the budget.
    (A hanging resolver cannot be made with a socket: ``getaddrinfo`` is replaced for it.)"""
    client.get("/mw/page/")
    for _ in range(middleware.PREFETCH_AFTER):
        client.get(PROBE)
    name, real_getaddrinfo, dns_back = "experience-api.test", socket.getaddrinfo, threading.Event()

    def hanging_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            dns_back.wait(5.0)
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(resolver, "_resolver", resolver.Resolver())
    monkeypatch.setattr(socket, "getaddrinfo", hanging_dns)
    settings.EXPERIENCE_TIMEOUT = 0.25
    settings.EXPERIENCE_API_URL = emulator.url.replace("127.0.0.1", name)
    caplog.set_level(logging.DEBUG, logger="django_experience")
    caplog.clear()
    try:
        answer = client.get(PROBE).json()
    finally:
        dns_back.set()
    assert answer["degraded"] is True
    warnings = [  # of the request path (background delivery reports its own sends)
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.name.startswith("django_experience.delivery")
    ]
    assert len(warnings) == 1 and "(RequestTimeout)" in warnings[0], warnings
    delivery.reset()


def test_prefetching_can_be_turned_off(
    client: Client, settings: Any, api_called: Callable[[], None]
) -> None:
    settings.EXPERIENCE_PREFETCH = False
    client.get("/mw/page/")
    for _ in range(middleware.PREFETCH_AFTER):
        client.get(PROBE)
    api_called()
    assert client.get(PROBE).json()["called_before_view"] is False


def test_new_visitors_are_not_prefetched(client: Client, api_called: Callable[[], None]) -> None:
    for _ in range(middleware.PREFETCH_AFTER):
        Client().get(PROBE)  # others teach the view
    api_called()
    answer = client.get(PROBE).json()  # no cookie: the profile is created when asked
    assert answer["called_before_view"] is False and answer["degraded"] is False


def test_an_identify_in_a_prefetched_view_stores_each_page_view_once(
    emulator: EmulatorHandle, client: Client
) -> None:
    def page_views() -> int:
        return sum(
            1
            for profile in emulator.profiles()
            for event in profile["events"]
            if event["type"] == "page"
        )

    client.get("/mw/page/")
    rounds = middleware.PREFETCH_AFTER + 2  # the last two are sent early
    for _ in range(rounds):
        answer = client.get("/mw/identify-on-get/", {"user_id": "crm-7"}).json()
        assert answer["degraded"] is False
    assert _eventually(lambda: page_views() == 1 + rounds, 2.0)
    delivery.flush(5)
    assert page_views() == 1 + rounds
