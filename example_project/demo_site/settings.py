"""Settings of the example shop, read from the environment through django-environ.

Every value has a default that runs the shop locally against the bundled emulator of the
Experience API. Point the same site at a real Contentful Personalization environment by setting
``EXPERIENCE_ORGANIZATION_ID``, ``EXPERIENCE_ENVIRONMENT`` and ``EXPERIENCE_API_URL``.
"""

from __future__ import annotations

from pathlib import Path

import environ

PROJECT_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
# An optional `.env` file next to manage.py, for people who prefer one to exported variables.
if (PROJECT_DIR / ".env").is_file():
    environ.Env.read_env(PROJECT_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=True)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="demo-only-not-secret-change-me")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_experience",
    "shop",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # After authentication: it identifies signed-in users with the Experience API.
    "django_experience.middleware.ExperienceMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "demo_site.urls"
WSGI_APPLICATION = "demo_site.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                # `experience` in templates: the visitor's personalization (lazy).
                "django_experience.context_processors.experience",
            ],
        },
    }
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{PROJECT_DIR / 'db.sqlite3'}"),
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS: list[dict[str, str]] = []
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATIC_ROOT = env.path("DJANGO_STATIC_ROOT", default=PROJECT_DIR / "staticfiles")

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"django_experience": {"handlers": ["console"], "level": "INFO"}},
}

# --- Personalization -------------------------------------------------------------------------
# The defaults talk to the local emulator (`make demo` starts it and sets the URL).
EXPERIENCE_ORGANIZATION_ID = env.str("EXPERIENCE_ORGANIZATION_ID", default="demo-shop")
EXPERIENCE_ENVIRONMENT = env.str("EXPERIENCE_ENVIRONMENT", default="main")
EXPERIENCE_API_URL = env.str("EXPERIENCE_API_URL", default="http://127.0.0.1:8765")
EXPERIENCE_USER_TRAITS = "shop.traits.user_traits"
# The experiences configured sticky (emulator.json: the call-to-action test): only their views
# are sent, which pins the variant a visitor was shown.
EXPERIENCE_STICKY_EXPERIENCES = ["exp-cta-test"]

# Profile destinations: with the local emulator (`make demo` sets SHOP_EMULATED_DESTINATIONS),
# each sign-in is also upserted, in the background, to the emulator's Experiture and Releva
# (see what they stored at <emulator>/__emulator__/destinations). For the real platforms, set
# EXPERIENCE_DESTINATIONS here with their URLs and secrets from the environment.
if env.bool("SHOP_EMULATED_DESTINATIONS", default=False):
    EXPERIENCE_DESTINATIONS = {
        "experiture": {
            "url": f"{EXPERIENCE_API_URL}/experiture/public/v1",
            "token": "demo-experiture-token",
            "match_key": "email",
        },
        "releva": {
            "url": f"{EXPERIENCE_API_URL}/releva/api/v0",
            "secret_key": "demo-releva-key",
            "fields": {
                "email": "email",
                "firstname": "firstName",
                "lastname": "lastName",
                "tier": "custom.tier",
            },
        },
    }

# Entry ids the templates personalize. With a real environment, use the ids of the baseline
# entries of your experiences in Contentful (variants are picked by position, so only the
# baselines need to match).
SHOP_HERO_ENTRY = env.str("SHOP_HERO_ENTRY", default="hero-default")
SHOP_BANNER_ENTRY = env.str("SHOP_BANNER_ENTRY", default="banner-new-visitor")
SHOP_SHIPPING_ENTRY = env.str("SHOP_SHIPPING_ENTRY", default="shipping-standard")
SHOP_CART_ENTRY = env.str("SHOP_CART_ENTRY", default="cart-empty")
