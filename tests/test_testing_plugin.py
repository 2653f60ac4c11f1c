"""The pytest plugin as users meet it: a fresh inner test session using the fixture."""

from __future__ import annotations

from pathlib import Path

import pytest

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
