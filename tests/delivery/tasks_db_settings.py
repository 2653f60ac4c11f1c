"""Settings of the database task backend test (run in subprocesses): delivery through tasks."""

from __future__ import annotations

import os

import environ

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "django_tasks", "django_tasks_db"]
# A SQLite file, or a PostgreSQL database in the suite's PostgreSQL run (tests.databases).
DATABASES = {"default": environ.Env.db_url_config(os.environ["TEST_DATABASE_URL"])}
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
EXPERIENCE_DELIVERY = "tasks"
EXPERIENCE_API_URL = os.environ["TEST_API_URL"]
EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.05
