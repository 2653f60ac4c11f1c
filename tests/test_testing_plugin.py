"""The pytest plugin as users meet it: a fresh inner test session using the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.stub_server import StubServer

pytest_plugins = ["pytester"]

INNER_TESTS = """
from django_experience.breaker import breaker
from django_experience.conf import conf


def test_a_faulty_api_opens_the_breaker(experience_emulator):
    for _ in range(conf.BREAKER_THRESHOLD + 1):
        breaker.record_failure()
    assert breaker.state != "closed"


def test_the_next_test_starts_with_a_closed_breaker(experience_emulator):
    assert breaker.state == "closed"
    assert conf.API_URL == experience_emulator.url
"""


def test_fixture_isolates_tests_from_each_others_breaker(pytester: pytest.Pytester) -> None:
    root = Path(__file__).resolve().parent.parent
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", f"pythonpath={root}", "--ds=tests.settings", "-q"
    )
    result.assert_outcomes(passed=2)


LEAK_SETTINGS = """
import os

from tests.settings import *  # noqa: F403

# The site's own API and destinations: what a project's test settings usually still name.
EXPERIENCE_API_URL = os.environ["SITE_API_URL"]
EXPERIENCE_DELIVERY = "thread"
EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.2
EXPERIENCE_DESTINATIONS = {
    "releva": {"url": os.environ["SITE_API_URL"] + "/releva", "secret_key": "real-key"},
}
"""

LEAK_TESTS = """
import time

from django.conf import settings

from django_experience import delivery
from django_experience.api.events import track_event


def test_a_queues_an_event_and_ends(experience_emulator):
    delivery.enqueue({**track_event("Clicked"), "anonymousId": "p-1"})


def test_b_never_meets_it(experience_emulator):
    time.sleep(0.5)  # beyond the flush interval: a leftover event would have been sent
    delivery.flush(2)
    assert experience_emulator.request_count() == 0


def test_c_destinations_are_the_emulator_s(experience_emulator):
    releva = settings.EXPERIENCE_DESTINATIONS["releva"]
    assert releva["url"] == experience_emulator.url + "/releva/api/v0"
    assert releva["secret_key"] == "real-key"


def test_d_queues_once_more(experience_emulator):
    delivery.enqueue({**track_event("Clicked"), "anonymousId": "p-2"})


def test_e_without_the_emulator():
    time.sleep(0.5)
"""


def test_events_of_a_test_reach_neither_the_next_test_nor_the_site_s_api(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = Path(__file__).resolve().parent.parent
    pytester.makepyfile(leak_settings=LEAK_SETTINGS, test_leak=LEAK_TESTS)
    with StubServer() as site_api:
        monkeypatch.setenv("SITE_API_URL", site_api.url)
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-o", f"pythonpath={root} {pytester.path}",
            "--ds=leak_settings", "-q",
        )
        result.assert_outcomes(passed=5)
        assert site_api.requests == []  # not during the session, not at its exit
