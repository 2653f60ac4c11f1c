"""Settings of import commands run in a subprocess: the test settings with a database of their
own (a SQLite file, or PostgreSQL in the suite's PostgreSQL run)."""

from __future__ import annotations

import os

import environ

from tests.settings import *  # noqa: F403

# A SQLite file, or a PostgreSQL database in the suite's PostgreSQL run (tests.databases).
DATABASES = {"default": environ.Env.db_url_config(os.environ["TEST_DATABASE_URL"])}
