"""Django settings of the benchmarks (a small site with the middleware and template tags)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

SECRET_KEY = "benchmarks-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["*"]
USE_TZ = True
USE_I18N = False

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django_experience",
]

WITHOUT_EXPERIENCE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
WITH_EXPERIENCE = [*WITHOUT_EXPERIENCE, "django_experience.middleware.ExperienceMiddleware"]
MIDDLEWARE = WITH_EXPERIENCE

ROOT_URLCONF = "benchmarks.urls"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        # One file per benchmark process: imports store a mapping per profile.
        "NAME": str(Path(tempfile.gettempdir()) / f"experience-bench-{os.getpid()}.sqlite3"),
        "OPTIONS": {"transaction_mode": "IMMEDIATE"},
    }
}

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [HERE / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django_experience.context_processors.experience",
            ],
        },
    }
]

STATIC_URL = "/static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LOGGING_CONFIG = None

EXPERIENCE_ORGANIZATION_ID = "bench-org"
EXPERIENCE_ENVIRONMENT = "main"
EXPERIENCE_API_URL = "http://127.0.0.1:9"  # each benchmark points it at its stub
EXPERIENCE_DELIVERY = "thread"
# Every experience reports its views (the worst case; by default none does): the measurements
# stay comparable with rounds before views were limited to the experiences configured sticky.
EXPERIENCE_STICKY_EXPERIENCES = "__all__"
