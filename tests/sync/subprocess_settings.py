"""Settings of import commands run in a subprocess: the test settings with a database file."""

from __future__ import annotations

import os

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["TEST_DATABASE_FILE"]}
}
