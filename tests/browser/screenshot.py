"""Make the README's screenshot of the demo shop with the browser-test tooling.

    .venv/bin/python -m tests.browser.screenshot [docs/screenshot.png]

Starts the emulator and the example shop, signs in as Ada, follows the spring campaign link and
captures the page in headless Chromium.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.servers import (
    ADA,
    CHROMIUM,
    CHROMIUM_ARGS,
    REPO_DIR,
    DemoEmulator,
    ExampleSite,
)


def capture(output: Path) -> None:
    emulator = DemoEmulator().start()
    site = ExampleSite(emulator.url)
    try:
        site.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            context = browser.new_context(
                base_url=site.url, viewport={"width": 1200, "height": 900}
            )
            page = context.new_page()
            page.goto("/accounts/login/")
            page.fill("#id_username", ADA[0])
            page.fill("#id_password", ADA[1])
            page.click("button[type=submit]")
            page.wait_for_url(f"{site.url}/")
            page.goto("/products/")  # makes Ada a returning visitor of the home page
            page.goto("/?utm_campaign=spring-sale")
            output.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(output), full_page=True)
            browser.close()
    finally:
        site.close()
        emulator.stop()


def main() -> None:
    output = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO_DIR / "docs" / "screenshot.png"
    capture(output)
    print(f"Saved {output}")


if __name__ == "__main__":
    main()
