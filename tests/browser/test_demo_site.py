"""The example shop in a real headless Chromium, against the emulator of the Experience API."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from tests.browser.servers import ADA, DemoEmulator, ExampleSite

ADA_EMAIL = "ada@example.com"

if TYPE_CHECKING:
    from playwright.sync_api import Page

pytestmark = pytest.mark.browser

COOKIE = re.compile(r"(?:^|;\s*)ntaid=([^;]+)")


def visitor_id(page: Page) -> str:
    """The profile id as the page's own JavaScript sees it."""
    match = COOKIE.search(str(page.evaluate("document.cookie")))
    assert match, "no ntaid cookie readable from JavaScript"
    return match.group(1)


def click_and_wait(page: Page, selector: str) -> None:
    """Click something that submits a form and wait for the page it leads to (after redirects)."""
    with page.expect_navigation():
        page.click(selector)


def sign_in(page: Page, username: str, password: str) -> None:
    page.goto("/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    click_and_wait(page, "button[type=submit]")
    assert urlsplit(page.url).path == "/", f"sign-in did not lead home: {page.url}"


def hero_variant(page: Page) -> str | None:
    return page.get_attribute("[data-testid=hero]", "data-variant")


def test_first_visit_sets_a_cookie_javascript_can_read(page: Page, emulator: DemoEmulator) -> None:
    response = page.goto("/")
    assert response is not None and response.status == 200
    profile_id = visitor_id(page)
    # The page's script read the same cookie, and the id is a real profile of the API.
    assert page.inner_text("#visitor-id") == profile_id
    assert emulator.profile(profile_id) is not None
    assert hero_variant(page) == "baseline"


def test_campaign_link_shows_the_campaign_hero(page: Page) -> None:
    page.goto("/")
    assert hero_variant(page) == "baseline"
    assert "Gear for every trail" in page.inner_text("[data-testid=hero]")

    page.goto("/?utm_campaign=spring-sale&utm_source=newsletter")
    assert hero_variant(page) == "campaign"
    assert "off every shell jacket" in page.inner_text("[data-testid=hero]")


def test_signing_in_greets_by_first_name(page: Page) -> None:
    page.goto("/")
    assert page.locator("[data-testid=greeting]").count() == 0

    sign_in(page, *ADA)
    assert page.inner_text("[data-testid=greeting]") == "Hi Ada"
    # Ada's traits put her in the gold audience.
    assert page.get_attribute("[data-testid=shipping]", "data-variant") == "gold"

    click_and_wait(page, "text=Sign out")
    assert page.locator("[data-testid=greeting]").count() == 0
    assert page.get_attribute("[data-testid=shipping]", "data-variant") == "baseline"


def test_signing_in_upserts_the_user_to_the_destinations(
    page: Page, emulator: DemoEmulator, site: ExampleSite
) -> None:
    sign_in(page, *ADA)
    deadline = time.monotonic() + 10  # background delivery: within a round or two
    while True:
        stored = emulator.destinations()
        experiture = [r for r in stored.get("experiture") or [] if r.get("email") == ADA_EMAIL]
        releva = [p for p in stored.get("releva") or [] if p.get("email") == ADA_EMAIL]
        if (experiture and releva) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert experiture and experiture[-1]["firstname"] == "Ada", (stored, site.log()[-3000:])
    assert releva and releva[-1]["firstName"] == "Ada", (stored, site.log()[-3000:])


def test_admin_lists_the_signed_in_users_mapping(page: Page) -> None:
    sign_in(page, *ADA)
    profile_id = visitor_id(page)

    page.goto("/admin/django_experience/profilemapping/")
    rows = page.locator("#result_list tbody tr")
    assert rows.count() >= 1
    ada_rows = rows.filter(has_text=profile_id)
    assert ada_rows.count() == 1
    assert "ada" in ada_rows.inner_text()


def test_add_to_cart_is_tracked_on_the_server(page: Page, emulator: DemoEmulator) -> None:
    page.goto("/")
    profile_id = visitor_id(page)
    assert page.locator("[data-testid=cart-reminder]").count() == 0
    click_and_wait(page, "article:has-text('Enamel Camp Mug') >> text=Add to cart")
    assert "Enamel Camp Mug is in your cart." in page.inner_text(".messages")

    # The event goes through background delivery: wait (bounded) until the API has it.
    deadline = time.monotonic() + 10
    tracked: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not tracked:
        stored = emulator.profile(profile_id) or {}
        tracked = [
            event
            for event in stored.get("events", [])
            if event.get("type") == "track" and event.get("event") == "Add to cart"
        ]
        if not tracked:
            time.sleep(0.1)
    assert tracked, "the Add to cart event never reached the API"
    assert tracked[0]["properties"]["product"] == "camp-mug"
    # The event put the visitor in the "Add to cart" audience.
    page.reload()
    assert page.locator("[data-testid=cart-reminder]").count() == 1


def test_page_renders_baseline_while_the_api_is_down(
    page: Page, emulator: DemoEmulator, site: ExampleSite
) -> None:
    emulator.stop()
    try:
        response = page.goto("/?utm_campaign=spring-sale")
        assert response is not None and response.status == 200
        assert hero_variant(page) == "baseline"
        assert page.get_attribute("[data-testid=banner]", "data-variant") == "baseline"
        assert page.inner_text("[data-testid=cta]") == "Shop the collection"
        assert "cannot be reached" in page.inner_text("[data-testid=status]")
    finally:
        emulator.start()
