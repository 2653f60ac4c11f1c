"""The browser-test tooling itself, in fresh inner pytest sessions that load its conftest.

A failing browser test leaves a screenshot under ``test-artifacts/browser/``; a missing Chromium
skips the browser tests, unless ``EXPERIENCE_REQUIRE_BROWSER=1`` (CI) makes it fail the run.
The inner sessions use a page of their own instead of the demo shop, so they stay fast.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser.conftest import ARTIFACTS, CHROMIUM_ENV, require_browser

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[2]

# The inner session loads the real browser conftest: its fixtures and its report hook.
INNER_CONFTEST = 'pytest_plugins = ["tests.browser.conftest"]\n'

FAILING_BROWSER_TEST = """
import pytest


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_content("<h1 id='greeting'>Hi there</h1>")
    yield page
    context.close()


def test_greets_ada(page):
    assert page.inner_text("#greeting") == "Hi Ada"
"""

BROWSER_TEST = """
def test_needs_the_browser(browser):
    assert browser.is_connected()
"""


def _run(pytester: pytest.Pytester, test_source: str) -> pytest.RunResult:
    pytester.makeconftest(INNER_CONFTEST)
    pytester.makepyfile(test_inner=test_source)
    # -rs: the skip reason is part of what is checked.
    return pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", f"pythonpath={ROOT}", "-rs"
    )


@pytest.mark.browser
def test_a_failing_browser_test_saves_a_screenshot(pytester: pytest.Pytester) -> None:
    require_browser()
    result = _run(pytester, FAILING_BROWSER_TEST)
    result.assert_outcomes(failed=1)
    screenshots = list((pytester.path / ARTIFACTS).glob("*.png"))
    assert [path.name for path in screenshots] == ["test_inner.py_test_greets_ada.png"]
    assert screenshots[0].read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    result.stdout.fnmatch_lines([f"*saved to {screenshots[0]}*"])


def test_a_missing_browser_skips_the_browser_tests(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = pytester.path / "no-such-chromium"
    monkeypatch.setenv(CHROMIUM_ENV, str(missing))
    monkeypatch.delenv("EXPERIENCE_REQUIRE_BROWSER", raising=False)
    result = _run(pytester, BROWSER_TEST)
    result.assert_outcomes(skipped=1)
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([f"*Chromium is not installed at {missing}*"])


def test_a_missing_browser_fails_the_run_when_it_is_required(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = pytester.path / "no-such-chromium"
    monkeypatch.setenv(CHROMIUM_ENV, str(missing))
    monkeypatch.setenv("EXPERIENCE_REQUIRE_BROWSER", "1")
    result = _run(pytester, BROWSER_TEST)
    # The fixture fails, so the test errors in its set-up: the run fails, nothing is skipped.
    result.assert_outcomes(errors=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        [f"*Chromium is not installed at {missing}, and EXPERIENCE_REQUIRE_BROWSER=1 requires*"]
    )
