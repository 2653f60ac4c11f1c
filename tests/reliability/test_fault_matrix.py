"""Every fault of the emulator x both modes x anonymous/signed-in visitors.

Every page answers 200 with the baseline content, within the time budget (timed against a
healthy request made just before: what Django and a loaded machine take is not the API's),
nothing escapes to the test client (it re-raises any exception a view or middleware lets out),
and the failure is logged exactly once. Background delivery of the unsent page view is a
separate, later send with its own reporting; it is queued here and discarded after each test.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from django_experience import delivery
from django_experience.api import resolver
from django_experience.emulator.handle import EmulatorHandle
from tests.reliability.conftest import BASELINE, PERSONALIZED

pytestmark = pytest.mark.django_db

BUDGET = 0.25
# What a faulty request may take beyond a healthy one made just before it (same page, same
# client, same process and load), besides the budget: both do the same Django work and differ
# in how the API call ends. On a loaded machine the difference came to the budget + 0.04 s at
# most. A request that waited for the fault would take its 1.5 s.
SLACK = 0.4

FAULTS: dict[str, dict[str, Any]] = {
    "latency beyond the budget": {"latency_ms": 1500},
    "500": {"error_rate": 1.0, "error_status": 500},
    "503 (retried)": {"error_rate": 1.0, "error_status": 503},
    "429 overload": {"overload_rate": 1.0},
    "malformed JSON": {"malformed_rate": 1.0},
    "dropped connection": {"drop_rate": 1.0},
    "slow body": {"slow_body_ms": 1500},
}


def _timed_get(client: Client, path: str) -> tuple[Any, float]:
    started = time.monotonic()
    response = client.get(path)
    return response, time.monotonic() - started


def failure_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    """Warnings and errors of the request path (delivery reports its own sends separately)."""
    return [
        record
        for record in caplog.records
        if record.name.startswith("django_experience")
        and not record.name.startswith("django_experience.delivery")
        and record.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("mode", ["update", "preflight"])
@pytest.mark.parametrize("visitor", ["anonymous", "signed-in"])
def test_fault_serves_baseline_once_logged(
    emulator: EmulatorHandle,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    fault: str,
    mode: str,
    visitor: str,
) -> None:
    settings.EXPERIENCE_MODE = mode
    settings.EXPERIENCE_DELIVERY = "thread"  # the visitor never waits for background sends
    client = Client()
    if visitor == "signed-in":
        get_user_model().objects.create_user("ada", email="ada@example.com", first_name="Ada")
        client.post("/sign-in/", {"username": "ada"})
    # The default budget: a loaded machine must not fail this. Timed: the faulty request below
    # is measured against it.
    healthy, healthy_elapsed = _timed_get(client, "/page/")
    assert healthy.status_code == 200
    assert all(part in healthy.content.decode() for part in PERSONALIZED)
    settings.EXPERIENCE_TIMEOUT = BUDGET
    emulator.faults(**FAULTS[fault])
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="django_experience")

    response, elapsed = _timed_get(client, "/page/")

    assert response.status_code == 200
    content = response.content.decode()
    for part in BASELINE:
        assert part in content, (part, content)
    assert '"profile": null' in content  # the hand-off carries no stale profile
    assert elapsed - healthy_elapsed < BUDGET + SLACK  # what the fault added
    lines = failure_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "baseline" in lines[0].getMessage()
    assert lines[0].exc_info is None  # one line, not a traceback
    delivery.reset()


@pytest.mark.parametrize("mode", ["update", "preflight"])
def test_refused_connection_serves_baseline(
    emulator: EmulatorHandle, settings: Any, caplog: pytest.LogCaptureFixture, mode: str
) -> None:
    settings.EXPERIENCE_MODE = mode
    settings.EXPERIENCE_TIMEOUT = BUDGET
    settings.EXPERIENCE_DELIVERY = "thread"
    emulator.stop()
    caplog.clear()
    response = Client().get("/page/")
    assert response.status_code == 200
    assert all(part in response.content.decode() for part in BASELINE)
    assert len(failure_lines(caplog)) == 1


@pytest.mark.parametrize("mode", ["update", "preflight"])
@pytest.mark.parametrize("visitor", ["anonymous", "signed-in"])
def test_dns_outage_serves_baseline_within_the_budget(
    emulator: EmulatorHandle,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    visitor: str,
) -> None:
    """The API named by a host whose lookup hangs (DNS down): the resolver, not a socket, is
    what blocks, and the page still answers within the budget. A hanging resolver cannot be
    made with a real socket, so ``getaddrinfo`` is replaced for that one name."""
    name = "experience-api.test"
    real_getaddrinfo = socket.getaddrinfo
    dns_back = threading.Event()

    def hanging_dns(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == name:
            dns_back.wait(5.0)  # a resolver's timeout and retries
            raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(resolver, "_resolver", resolver.Resolver())  # nothing cached
    monkeypatch.setattr(socket, "getaddrinfo", hanging_dns)
    settings.EXPERIENCE_MODE = mode
    settings.EXPERIENCE_DELIVERY = "thread"
    client = Client()
    if visitor == "signed-in":
        get_user_model().objects.create_user("ada", email="ada@example.com", first_name="Ada")
        client.post("/sign-in/", {"username": "ada"})
    # A healthy request just before, the API reachable: the DNS outage is timed against it. An
    # anonymous visitor's comes from another client: this one stays new.
    healthy, healthy_elapsed = _timed_get(client if visitor == "signed-in" else Client(), "/page/")
    assert all(part in healthy.content.decode() for part in PERSONALIZED)
    settings.EXPERIENCE_TIMEOUT = BUDGET
    settings.EXPERIENCE_API_URL = emulator.url.replace("127.0.0.1", name)
    caplog.clear()
    caplog.set_level(logging.DEBUG, logger="django_experience")
    before = emulator.request_count()
    try:
        response, elapsed = _timed_get(client, "/page/")
    finally:
        dns_back.set()

    assert response.status_code == 200
    content = response.content.decode()
    assert all(part in content for part in BASELINE), content
    assert elapsed - healthy_elapsed < BUDGET + SLACK  # the lookup given up within the budget
    lines = failure_lines(caplog)
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert "RequestTimeout" in lines[0].getMessage()
    assert emulator.request_count() == before  # it never got that far
    delivery.reset()
