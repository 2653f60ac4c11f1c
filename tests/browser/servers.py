"""The demo stack for browser tests and the README screenshot.

The example shop runs as its own process with its own settings (``demo_site.settings``), a
fresh SQLite database and the emulator of the Experience API running in this process; Chromium
is the system one, driven by Playwright.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from django_experience.emulator import EmulatorServer

REPO_DIR = Path(__file__).resolve().parents[2]
EXAMPLE_DIR = REPO_DIR / "example_project"
EMULATOR_CONFIG = EXAMPLE_DIR / "emulator.json"
ORGANIZATION_ID = "demo-shop"

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

# The demo accounts created by `manage.py create_demo_users`.
ADA = ("ada", "trailhead-ada")
GRACE = ("grace", "summit-grace")

STARTUP_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_up(url: str, timeout: float = STARTUP_SECONDS) -> bool:
    """Poll ``url`` until it answers with any HTTP status."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1):
                return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            time.sleep(0.1)
    return False


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class DemoEmulator:
    """The emulator with the example project's experiences and audiences.

    ``stop()`` makes its port refuse connections (an outage); ``start()`` serves the same state
    on the same port again, so the site's settings stay valid.
    """

    def __init__(self) -> None:
        self.server = EmulatorServer(port=0, config=EMULATOR_CONFIG)

    @property
    def url(self) -> str:
        return self.server.url

    def start(self) -> DemoEmulator:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def destinations(self) -> dict[str, Any]:
        """What the emulated Experiture and Releva stored."""
        data: dict[str, Any] = get_json(f"{self.url}/__emulator__/destinations")["data"]
        return data

    def profile(self, profile_id: str) -> dict[str, Any] | None:
        """What the control API shows of a profile (with its events), or ``None``."""
        try:
            data = get_json(f"{self.url}/__emulator__/profiles/{profile_id}")
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise
        if isinstance(data, dict) and isinstance(data.get("data"), dict):
            data = data["data"]  # the control API answers in the API's envelope
        return data if isinstance(data, dict) else None


class ExampleSite:
    """The example shop in a ``runserver`` process on a free port, with a throw-away database."""

    def __init__(self, api_url: str, *, extra_env: dict[str, str] | None = None) -> None:
        self.api_url = api_url
        self.port = free_port()
        self._tmp = tempfile.TemporaryDirectory(prefix="example-shop-")
        self.log_path = Path(self._tmp.name) / "site.log"
        self._process: subprocess.Popen[bytes] | None = None
        self.env = {
            **os.environ,
            # The suite's own settings module must not leak into the site's process.
            "DJANGO_SETTINGS_MODULE": "demo_site.settings",
            "DATABASE_URL": f"sqlite:///{Path(self._tmp.name) / 'db.sqlite3'}",
            "DJANGO_DEBUG": "true",
            "EXPERIENCE_ORGANIZATION_ID": ORGANIZATION_ID,
            "EXPERIENCE_ENVIRONMENT": "main",
            "EXPERIENCE_API_URL": api_url,
            "SHOP_EMULATED_DESTINATIONS": "1",
            # Outage tests stop the API briefly; the site must probe it again soon after.
            "EXPERIENCE_BREAKER_COOLDOWN": "0.5",
            # The browser shares the machine's cores with the site and the emulator: a page
            # that misses a 1 s budget would show the baseline. The outage tests refuse
            # connections, which no budget waits for.
            "EXPERIENCE_TIMEOUT": "5",
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _manage(self, *args: str) -> list[str]:
        return [sys.executable, str(EXAMPLE_DIR / "manage.py"), *args]

    def start(self) -> ExampleSite:
        for command in (("migrate", "--noinput", "--verbosity", "0"), ("create_demo_users",)):
            subprocess.run(
                self._manage(*command), env=self.env, check=True, capture_output=True, timeout=120
            )
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._manage("runserver", "--noreload", f"127.0.0.1:{self.port}"),
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if not wait_until_up(f"{self.url}/static/shop/shop.css"):
            self.stop()
            raise RuntimeError(f"The example site did not start:\n{self.log()}")
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None

    def close(self) -> None:
        self.stop()
        self._tmp.cleanup()
