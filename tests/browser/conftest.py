"""Fixtures of the real-browser tests: the demo stack, headless Chromium, failure screenshots.

Everything here is module-scoped on purpose: Playwright's synchronous API keeps an event loop
marked as running while it is alive, which must not leak into the rest of the suite.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser.servers import CHROMIUM, CHROMIUM_ARGS, DemoEmulator, ExampleSite

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

ARTIFACTS = Path("test-artifacts") / "browser"  # under the rootdir; git-ignored

CHROMIUM_ENV = "EXPERIENCE_CHROMIUM"
"""Environment variable naming another Chromium binary than ``/usr/bin/chromium``."""


def chromium_path() -> Path:
    """The Chromium to launch: ``$EXPERIENCE_CHROMIUM`` when set, else the system one."""
    value = os.environ.get(CHROMIUM_ENV)
    return Path(value) if value else CHROMIUM


def require_browser() -> None:
    """Skip without Chromium, or fail when the environment says a browser is required (CI)."""
    chromium = chromium_path()
    problem = None
    if not chromium.is_file():
        problem = f"Chromium is not installed at {chromium}"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "Playwright for Python is not installed"
    if problem is None:
        return
    if os.environ.get("EXPERIENCE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{problem}, and EXPERIENCE_REQUIRE_BROWSER=1 requires the browser tests.")
    pytest.skip(problem)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(chromium_path()), headless=True, args=CHROMIUM_ARGS
        )
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def emulator() -> Iterator[DemoEmulator]:
    server = DemoEmulator().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def site(emulator: DemoEmulator) -> Iterator[ExampleSite]:
    shop = ExampleSite(emulator.url).start()
    yield shop
    shop.close()


@pytest.fixture
def page(browser: Browser, site: ExampleSite) -> Iterator[Page]:
    """A new visitor: a fresh browser context (no cookies) with the site as base URL."""
    context = browser.new_context(base_url=site.url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(10_000)
    yield context.new_page()
    context.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    """Save a screenshot of the page under ``test-artifacts/browser/`` when a test fails."""
    report = yield
    if report.when == "call" and report.failed:
        page = getattr(item, "funcargs", {}).get("page")
        if page is not None and not page.is_closed():
            folder = item.config.rootpath / ARTIFACTS
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / (re.sub(r"[^A-Za-z0-9_.-]+", "_", item.nodeid) + ".png")
            try:
                page.screenshot(path=str(path), full_page=True)
                report.sections.append(("screenshot", f"saved to {path}"))
            except Exception as error:  # a broken page must not hide the test's own failure
                report.sections.append(("screenshot", f"could not be saved: {error}"))
    return report
