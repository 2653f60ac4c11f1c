"""Django settings of the test suite."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import django
import environ

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_experience",
]

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_experience.middleware.ExperienceMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]

ROOT_URLCONF = "tests.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        # A file, not shared-cache memory: concurrent writers (threaded tests) then wait for
        # each other's locks instead of failing at once with "database table is locked".
        # One file per test process, so parallel runs never share it.
        "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"experience-tests-{os.getpid()}.db")},
        # Writers take the lock when their transaction begins, so two of them never deadlock
        # upgrading read locks (SQLite would answer "database is locked" at once).
        # (Django 5.1+; older versions rely on the busy timeout alone.)
        "OPTIONS": (
            {"transaction_mode": "IMMEDIATE", "timeout": 20}
            if django.VERSION >= (5, 1)
            else {"timeout": 20}
        ),
    }
}

# The suite runs on SQLite unless ``EXPERIENCE_TEST_DATABASE_URL`` names another database
# (``postgres://user:password@127.0.0.1:5432/experience``): ``make test`` runs it once more on
# PostgreSQL when it is given one. The test database gets this process's id in its name, so two
# runs at once never share it.
_DATABASE_URL = os.environ.get("EXPERIENCE_TEST_DATABASE_URL")
if _DATABASE_URL:
    _DATABASE = environ.Env.db_url_config(_DATABASE_URL)
    if _DATABASE["ENGINE"] == "django.db.backends.mysql":
        # Django 5.2's default, which the README asks Django 4.2 sites to set (W003).
        _DATABASE["OPTIONS"] = {"charset": "utf8mb4", **_DATABASE.get("OPTIONS", {})}
    DATABASES = {"default": {**_DATABASE, "TEST": {"NAME": f"test_experience_{os.getpid()}"}}}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [Path(__file__).resolve().parent / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django_experience.context_processors.experience",
            ],
        },
    }
]

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

EXPERIENCE_ORGANIZATION_ID = "test-org"
EXPERIENCE_ENVIRONMENT = "main"
EXPERIENCE_DELIVERY = "sync"
