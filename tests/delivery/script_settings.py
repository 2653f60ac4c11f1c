"""Settings for delivery scripts run in a subprocess (background delivery through a thread)."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

EXPERIENCE_DELIVERY = "thread"
EXPERIENCE_API_URL = os.environ["TEST_API_URL"]
EXPERIENCE_DELIVERY_FLUSH_INTERVAL = float(os.environ.get("TEST_FLUSH_INTERVAL", "30"))
EXPERIENCE_DELIVERY_BACKOFF = 0.01
