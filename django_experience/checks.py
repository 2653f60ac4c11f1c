"""System checks of django-experience (ids ``django_experience.E001`` ...).

- E001 ``EXPERIENCE_ORGANIZATION_ID`` is missing.
- E002 the middleware is placed before ``AuthenticationMiddleware`` (or that one is missing).
- E003 ``EXPERIENCE_MODE`` is neither ``update`` nor ``preflight``.
- E004 ``EXPERIENCE_API_URL`` is not an http(s) URL with a host a resolver takes.
- E005 a dotted path (``EXPERIENCE_USER_TRAITS``, ``EXPERIENCE_USER_ID``, ``EXPERIENCE_CONSENT``)
  does not import, or is not callable.
- E006 an ``EXPERIENCE_EXCLUDE_PATHS`` entry is not a valid regular expression.
- E007 ``EXPERIENCE_DELIVERY`` is not ``thread``, ``tasks`` or ``sync``, or is ``tasks`` while
  neither ``django.tasks`` (Django 6) nor the ``django_tasks`` backport can be imported.
- E008 ``EXPERIENCE_STICKY_EXPERIENCES`` is neither a list of experience ids nor ``"__all__"``.
- E009 a number setting (``EXPERIENCE_TIMEOUT``, ``EXPERIENCE_MAX_RETRIES``, ...) is not a number,
  or out of its range; or ``EXPERIENCE_DELIVERY_DROP`` is not ``oldest`` or ``newest``.
- E010 ``EXPERIENCE_COOKIE_NAME`` is not a name a cookie can have.
- W001 the middleware is not installed.
- W002 ``EXPERIENCE_STICKY_EXPERIENCES`` lists experiences while no component view is sent
  (``EXPERIENCE_TRACK_COMPONENT_VIEWS`` off, the default in ``preflight`` mode).
- W003 the profile mappings live in a MySQL or MariaDB database that is connected to with a
  character set of 3 bytes a character (``utf8``, Django 4.2's default): a sign-in whose user
  id holds an emoji could not be stored.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Callable, Sequence
from http.cookies import CookieError, SimpleCookie
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.utils.module_loading import import_string

from django_experience.api.client import checked_host
from django_experience.api.transport import redact_credentials
from django_experience.conf import (
    ALL_EXPERIENCES,
    DELIVERY_BACKENDS,
    LIST_TYPES,
    MODES,
    TASK_MODULES,
    conf,
)

MIDDLEWARE_PATH = "django_experience.middleware.ExperienceMiddleware"
AUTH_MIDDLEWARE_PATH = "django.contrib.auth.middleware.AuthenticationMiddleware"


def _is_subclass_of(path: str, base_path: str) -> bool:
    if path == base_path:
        return True
    try:
        candidate, base = import_string(path), import_string(base_path)
    except ImportError:
        return False
    return isinstance(candidate, type) and isinstance(base, type) and issubclass(candidate, base)


def _index(middleware: Sequence[str], base_path: str) -> int | None:
    for index, path in enumerate(middleware):
        if _is_subclass_of(path, base_path):
            return index
    return None


@register()
def check_organization(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if conf.ORGANIZATION_ID.strip():
        return []
    return [
        Error(
            "EXPERIENCE_ORGANIZATION_ID is not set.",
            hint="Set it to the Client ID shown under 'SDK Keys' in Contentful Personalization, "
            "in the settings or in the environment variable of the same name.",
            id="django_experience.E001",
        )
    ]


@register()
def check_middleware(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    ours = _index(middleware, MIDDLEWARE_PATH)
    if ours is None:
        return [
            Warning(
                f"{MIDDLEWARE_PATH} is not in MIDDLEWARE: request.experience will be the null "
                "object and templates render baseline content.",
                hint=f"Add it to MIDDLEWARE after {AUTH_MIDDLEWARE_PATH}.",
                id="django_experience.W001",
            )
        ]
    auth = _index(middleware, AUTH_MIDDLEWARE_PATH)
    if auth is None or auth > ours:
        where = "is missing" if auth is None else "comes after it"
        return [
            Error(
                f"{MIDDLEWARE_PATH} needs request.user, but {AUTH_MIDDLEWARE_PATH} {where}.",
                hint=f"Place {MIDDLEWARE_PATH} after {AUTH_MIDDLEWARE_PATH} in MIDDLEWARE.",
                id="django_experience.E002",
            )
        ]
    return []


@register()
def check_mode(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    if conf.MODE in MODES:
        return []
    return [
        Error(
            f"EXPERIENCE_MODE is {conf.MODE!r}; it must be one of {', '.join(MODES)}.",
            id="django_experience.E003",
        )
    ]


@register()
def check_api_url(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    url = conf.API_URL
    shown = redact_credentials(url)  # the check's output gets logged: never the password
    problem = ""
    try:
        parts = urlsplit(url)
        checked_host(url)  # the host and port as the client takes them (ValueError: which part)
        valid = parts.scheme in ("http", "https") and not parts.query and not parts.fragment
    except ValueError as exc:
        valid, problem = False, f" ({exc})"
    if valid:
        return []
    return [
        Error(
            f"EXPERIENCE_API_URL {shown!r} is not an http(s) URL with a valid host{problem}.",
            hint="For example https://experience.ninetailed.co (no query string).",
            id="django_experience.E004",
        )
    ]


@register()
def check_callables(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    for name, value in (
        ("EXPERIENCE_USER_TRAITS", conf.USER_TRAITS),
        ("EXPERIENCE_USER_ID", conf.USER_ID),
        ("EXPERIENCE_CONSENT", conf.CONSENT),
    ):
        if value is None or value == "" or callable(value):
            continue
        problem = None
        try:
            target = import_string(str(value))
        except ImportError as exc:
            problem = f"does not import ({exc})"
        except Exception as exc:  # the module itself fails while importing
            problem = f"fails to import ({type(exc).__name__}: {exc})"
        else:
            if not callable(target):
                problem = "is not callable"
        if problem:
            errors.append(
                Error(
                    f"{name} = {value!r} {problem}.",
                    hint="Give the dotted path of a function, e.g. 'myapp.experience.traits'.",
                    id="django_experience.E005",
                )
            )
    return errors


@register()
def check_exclude_paths(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    errors: list[CheckMessage] = []
    configured = conf.EXCLUDE_PATHS_CONFIGURED or []  # the defaults are valid
    for name, patterns in (
        ("EXCLUDE_PATHS", configured),
        ("EXCLUDE_PATHS_EXTRA", conf.EXCLUDE_PATHS_EXTRA),
    ):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as exc:
                errors.append(
                    Error(
                        f"EXPERIENCE_{name} entry {pattern!r} is not a valid regex: {exc}.",
                        id="django_experience.E006",
                    )
                )
    return errors


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a missing parent package
        return False


@register()
def check_delivery(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    backend = conf.DELIVERY
    if backend not in DELIVERY_BACKENDS:
        problem = (
            f"EXPERIENCE_DELIVERY is {backend!r}; it must be one of "
            + ", ".join(DELIVERY_BACKENDS)
            + "."
        )
        hint = "Anything else would quietly use the default, thread."
    elif backend == "tasks" and not any(_importable(name) for name in TASK_MODULES):
        problem = (
            "EXPERIENCE_DELIVERY is 'tasks', but Django Tasks cannot be imported: neither "
            "django.tasks (Django 6) nor the django_tasks backport is installed."
        )
        hint = "pip install django-tasks (before Django 6), or use 'thread'."
    else:
        return []
    return [Error(problem, hint=hint, id="django_experience.E007")]


@register()
def check_sticky_experiences(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    value = conf.STICKY_EXPERIENCES_CONFIGURED
    if value is None:
        return []
    if not isinstance(value, LIST_TYPES):
        problem = f"is {type(value).__name__} {value!r}"
    elif isinstance(value, str):
        # "__all__", or ids read like the environment's form ("exp-a,exp-b")
        return _sticky_without_views()
    else:
        items = list(value)
        wrong = [item for item in items if not isinstance(item, str) or not item.strip()]
        if wrong:
            problem = f"holds {wrong[0]!r}, not an experience id"
        elif ALL_EXPERIENCES in items and len(items) > 1:
            problem = f"lists {ALL_EXPERIENCES!r} with experience ids (it means every experience)"
        else:
            return _sticky_without_views()
    return [
        Error(
            f"EXPERIENCE_STICKY_EXPERIENCES {problem}.",
            hint=f"Give a list of experience ids (strings), or {ALL_EXPERIENCES!r} for every "
            "experience.",
            id="django_experience.E008",
        )
    ]


# Settings a request (or delivery's thread) reads, each with the range its value must be in and
# how to say it. Without the check a wrong one fails every call it is read for: logged, and the
# visitor served baseline content.
_NUMBERS: tuple[tuple[str, Callable[[float], bool], str], ...] = (
    ("TIMEOUT", lambda value: 0 < value < math.inf, "a positive number of seconds"),
    ("MAX_RETRIES", lambda value: value >= 0, "a whole number, 0 or more"),
    # An expires past the year 9999 cannot be written (browsers keep a cookie 400 days at most).
    (
        "COOKIE_AGE",
        lambda value: 0 < value <= 100 * 365 * 24 * 60 * 60,
        "a positive number of seconds, at most 100 years",
    ),
    ("BREAKER_THRESHOLD", lambda value: value >= 1, "a whole number, 1 or more"),
    ("BREAKER_COOLDOWN", lambda value: 0 <= value < math.inf, "a number of seconds, 0 or more"),
)
# Delivery's settings are raised to their minimum when below it: only unreadable ones fail.
_DELIVERY_READ = (
    "QUEUE_SIZE", "DROP", "FLUSH_INTERVAL", "BATCH_SIZE", "MAX_BATCH_BYTES", "MAX_RETRIES",
    "BACKOFF", "BACKOFF_MAX", "TIMEOUT", "EXIT_TIMEOUT",
)


def _given(name: str) -> object:
    """The value as configured: the Django setting, else the environment variable."""
    return getattr(settings, name, os.environ.get(name))


@register()
def check_values(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    from django_experience.delivery.settings import delivery_settings

    errors: list[CheckMessage] = []

    def report(name: str, problem: str) -> None:
        errors.append(Error(f"{name} is {_given(name)!r}; {problem}.", id="django_experience.E009"))

    for attribute, in_range, expected in _NUMBERS:
        name = f"EXPERIENCE_{attribute}"
        try:
            value = getattr(conf, attribute)
        except (TypeError, ValueError, OverflowError):  # OverflowError: int() of an infinity
            report(name, f"it must be {expected}")
            continue
        if not in_range(value):  # every comparison with NaN is false: it is in no range
            report(name, f"it must be {expected}")
    for attribute in _DELIVERY_READ:
        try:
            getattr(delivery_settings, attribute)
        except (TypeError, ValueError, OverflowError) as exc:
            report(f"EXPERIENCE_DELIVERY_{attribute}", f"it cannot be used ({exc})")
    return errors


@register()
def check_destinations(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Build the destinations once (no request is sent) to find what would fail every send."""
    from django_experience.destinations.configured import build_destinations

    try:
        build_destinations(conf.DESTINATIONS)
    except (ValueError, TypeError) as exc:
        return [
            Error(
                f"EXPERIENCE_DESTINATIONS cannot be used: {exc}.",
                hint="Every profile sent to it would fail; see the README's "
                "EXPERIENCE_DESTINATIONS section.",
                id="django_experience.E011",
            )
        ]
    return []


@register()
def check_cookie_name(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    name = conf.COOKIE_NAME
    try:
        SimpleCookie()[name] = ""  # what Django's set_cookie does with it
    except CookieError:
        pass
    else:
        return []
    return [
        Error(
            f"EXPERIENCE_COOKIE_NAME {name!r} is not a name a cookie can have: every response "
            "would fail to set it.",
            hint="Letters, digits and !#$%&'*+-.^_`|~ only; the browser SDK reads 'ntaid'.",
            id="django_experience.E010",
        )
    ]


@register()
def check_mapping_charset(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """Reads the connection's parameters, never connects."""
    from django.db import connections

    from django_experience.mappings import mapping_database

    alias = mapping_database()
    connection = connections[alias]
    if connection.vendor != "mysql":
        return []
    charset = str(connection.get_connection_params().get("charset") or "")
    if charset.lower() == "utf8mb4":
        return []
    return [
        Warning(
            f"The database {alias!r}, which keeps the profile mappings, is connected to with "
            f"the character set {charset or 'of the server'!r}: a user id or external id "
            "with a character outside it (an emoji) cannot be stored, and that sign-in fails.",
            hint=f"Set DATABASES[{alias!r}]['OPTIONS']['charset'] = 'utf8mb4', as Django 5.2 "
            "does by default.",
            id="django_experience.W003",
        )
    ]


def _sticky_without_views() -> list[CheckMessage]:
    """The list says which views to send, the master switch whether any is: a list that can
    never take effect is a misunderstanding (the variants are not kept for the visitor)."""
    if not conf.STICKY_EXPERIENCES or conf.TRACK_COMPONENT_VIEWS:
        return []
    why = "is False" if conf.MODE == "update" else "is off (the default in preflight mode)"
    return [
        Warning(
            "EXPERIENCE_STICKY_EXPERIENCES lists experiences, but no component view is sent: "
            f"EXPERIENCE_TRACK_COMPONENT_VIEWS {why}, so the server pins none of their variants.",
            hint="If the browser SDK reports the views, leave EXPERIENCE_STICKY_EXPERIENCES "
            "empty; if only Django renders the variants, set EXPERIENCE_TRACK_COMPONENT_VIEWS "
            "= True.",
            id="django_experience.W002",
        )
    ]


__all__ = [
    "check_api_url",
    "check_callables",
    "check_cookie_name",
    "check_delivery",
    "check_exclude_paths",
    "check_mapping_charset",
    "check_middleware",
    "check_mode",
    "check_organization",
    "check_sticky_experiences",
    "check_values",
]
