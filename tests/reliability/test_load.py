"""Load: 16 threads of mixed requests through a real threaded WSGI server, against the
emulator, for a bounded time. No errors, no duplicate mappings, no event lost or duplicated."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.handlers.wsgi import WSGIHandler

from django_experience import delivery
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 16
USERS = 4  # each signed in on two devices at once
LOAD_SECONDS = 3.0


class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128  # 16 clients opening a connection per request (HTTP/1.0)


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def site_url() -> Iterator[str]:
    server = make_server("127.0.0.1", 0, WSGIHandler(), server_class=ThreadingWSGIServer,
                         handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def _duplicates(emulator: EmulatorHandle) -> list[tuple[str, str, int]]:
    """Events stored more than once: (type, messageId, times)."""
    seen: Counter[tuple[str, str]] = Counter(
        (event.get("type", "?"), event.get("messageId", "?"))
        for profile in emulator.profiles()
        for event in profile.get("events", [])
    )
    return [(kind, message, times) for (kind, message), times in seen.items() if times > 1]


def test_mixed_load_loses_nothing(
    emulator: EmulatorHandle, settings: Any, site_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="django_experience")
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_TIMEOUT = 5.0  # correctness under load, not latency, is checked here
    settings.EXPERIENCE_TRACK_COMPONENT_VIEWS = False  # so every request sends a known count
    for n in range(USERS):
        get_user_model().objects.create_user(f"user{n}", email=f"user{n}@example.com",
                                             first_name=f"User{n}")
    sessions = [requests.Session() for _ in range(THREADS)]
    for session in sessions:  # the default user agent is (rightly) treated as a bot
        session.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
    signed_in = {i: f"user{i % USERS}" for i in range(THREADS // 2, THREADS)}
    failures: list[str] = []
    counts: Counter[str] = Counter()
    lock = threading.Lock()
    start_together = threading.Barrier(THREADS)
    signed_in_all = threading.Barrier(THREADS + 1)
    load_starts, load_ends = threading.Event(), threading.Event()

    def check(response: requests.Response, what: str) -> None:
        if response.status_code != 200:
            with lock:
                failures.append(f"{what}: {response.status_code} {response.text[:200]}")

    def visitor(index: int) -> None:
        session = sessions[index]
        try:
            start_together.wait()
            check(session.get(f"{site_url}/page/"), "first page")
            if index in signed_in:  # concurrent first sign-ins, two devices per user
                check(session.post(f"{site_url}/sign-in/", {"username": signed_in[index]}),
                      "sign-in")
        except Exception as exc:
            failures.append(f"visitor {index}: {exc!r}")
        signed_in_all.wait()
        load_starts.wait()
        actions = ("page", "plain", "track")
        n = index
        while not load_ends.is_set():
            action = actions[n % 3]
            n += 1
            try:
                if action == "track":
                    response = session.post(f"{site_url}/track/", {"sku": f"sku-{n}"})
                else:
                    response = session.get(f"{site_url}/{action}/")
            except Exception as exc:
                with lock:
                    failures.append(f"{action}: {exc!r}")
                continue
            check(response, action)
            with lock:
                counts[action] += 1
                if action == "page" and "hero=[baseline]" in response.text:
                    counts["degraded pages"] += 1

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    signed_in_all.wait(timeout=60)
    # Sign-ins are done: from here every request sends exactly one event.
    assert delivery.flush(timeout=30)
    before = emulator.stats()["events"]
    assert before == THREADS + len(signed_in)  # first pages and identify events
    load_starts.set()
    time.sleep(LOAD_SECONDS)
    load_ends.set()
    for thread in threads:
        thread.join(timeout=60)
    assert delivery.flush(timeout=30)

    assert failures == []
    assert counts["page"] and counts["plain"] and counts["track"]
    sent = counts["page"] + counts["plain"] + counts["track"]
    assert emulator.stats()["events"] - before == sent, (counts, _duplicates(emulator))
    counters = delivery.counters()
    problems = [
        f"{r.name} {r.threadName}: {r.getMessage()}"
        for phase in ("setup", "call")
        for r in caplog.get_records(phase)
        if r.levelno >= logging.WARNING
    ]
    assert counters["dropped"] == 0 and counters["failed"] == 0, (counters, problems)
    # One mapping per user, whatever order the devices signed in.
    mappings = list(ProfileMapping.objects.values_list("user__username", "profile_id"))
    assert sorted(user for user, _ in mappings) == [f"user{n}" for n in range(USERS)]
    for _, profile_id in mappings:
        assert emulator.profile(profile_id) is not None
    # Both devices of a user ended on the user's profile.
    for index, username in signed_in.items():
        cookie = sessions[index].cookies.get("ntaid")
        assert cookie == dict(mappings)[username], (index, username)
