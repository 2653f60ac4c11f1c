"""The test settings with django-experience's tables in a database of their own."""

import os
import tempfile
from pathlib import Path

from tests.settings import *  # noqa: F403

DATABASES = {
    "default": DATABASES["default"],  # noqa: F405
    "experience": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": ":memory:",
        "TEST": {
            "NAME": str(Path(tempfile.gettempdir()) / f"experience-tests-2-{os.getpid()}.db")
        },
    },
}
DATABASE_ROUTERS = ["tests.two_databases.router.ExperienceRouter"]
