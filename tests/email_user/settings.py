"""The test settings with the e-mail user model of ``tests.email_user``."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.email_user"]  # noqa: F405
AUTH_USER_MODEL = "email_user.User"
