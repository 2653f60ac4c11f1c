"""The one place settings are read.

Each setting is looked up on first use in Django's settings first, then in the environment
variable of the same name (parsed by django-environ), then falls back to its default. What was
read is remembered until the settings change (``override_settings``, pytest-django's ``settings``
fixture) or :func:`reload` is called. Use the module-level ``conf`` object:
``conf.ORGANIZATION_ID``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast, overload

import environ
from django.conf import settings
from django.core.signals import setting_changed
from django.utils.module_loading import import_string

_env = environ.Env()
_MISSING = object()
_T = TypeVar("_T")

DEFAULT_API_URL = "https://experience.ninetailed.co"
MODES = ("update", "preflight")
DELIVERY_BACKENDS = ("thread", "tasks", "sync")
# Where the ``tasks`` delivery backend finds Django Tasks, in the order it tries them.
TASK_MODULES = ("django.tasks", "django_tasks")


_UNSET = object()  # neither in Django's settings nor in the environment
_resolved: dict[str, Any] = {}
_resolved_from: list[object] = [None]  # the settings object _resolved was read from
# LazySettings keeps the settings object in its instance dict (cleared in place, never
# replaced); reading it there skips LazyObject's attribute hook on every lookup.
_lazy_settings_dict: dict[str, Any] = object.__getattribute__(settings, "__dict__")


def _current() -> dict[str, Any]:
    """What was read from the settings object in use (forgotten when it is swapped)."""
    # override_settings (and so pytest-django's fixture) swaps the settings object.
    holder = _lazy_settings_dict.get("_wrapped")
    if holder is not _resolved_from[0]:
        _resolved.clear()
        _resolved_from[0] = holder
    return _resolved


def _lookup(name: str, parse: Callable[[str], Any], default: Any) -> Any:
    # Remembered until a setting changes: a missing Django setting costs an exception and the
    # environment a lookup, over a dozen times a request otherwise.
    resolved = _current()
    value = resolved.get(name, _MISSING)
    if value is _MISSING:
        value = getattr(settings, name, _MISSING)
        if value is _MISSING:
            value = parse(name) if name in os.environ else _UNSET
        resolved[name] = value
    return default if value is _UNSET else value


def remembered(key: str, compute: Callable[[], _T]) -> _T:
    """``compute()``, remembered like a setting: until the settings change or :func:`reload`.

    For values derived from settings that would cost too much to derive on every request;
    ``key`` must not be a setting's name.
    """
    resolved = _current()
    value = resolved.get(key, _MISSING)
    if value is _MISSING:
        value = resolved[key] = compute()
    return cast(_T, value)


class setting(Generic[_T]):  # named and used like ``property``
    """A read-only property whose value is remembered like a setting (see :func:`remembered`).

    For the typed settings read on every request: a lookup then costs one dict access instead
    of the parse and checks behind it, which run again only after the settings change.
    """

    def __init__(self, read: Callable[[Any], _T]) -> None:
        self._read = read
        self._key = f"setting:{read.__qualname__}"
        self.__doc__ = read.__doc__

    @overload
    def __get__(self, instance: None, owner: type | None = None) -> setting[_T]: ...

    @overload
    def __get__(self, instance: object, owner: type | None = None) -> _T: ...

    def __get__(self, instance: object | None, owner: type | None = None) -> _T | setting[_T]:
        if instance is None:
            return self
        resolved = _current()
        value = resolved.get(self._key, _MISSING)
        if value is _MISSING:
            value = resolved[self._key] = self._read(instance)
        return cast(_T, value)


def reload() -> None:
    """Forget what was read: call after changing ``EXPERIENCE_*`` environment variables at run
    time. (Changes through ``override_settings`` or the ``settings`` fixture need nothing.)"""
    _resolved.clear()


def _on_setting_changed(**kwargs: Any) -> None:
    _resolved.clear()


setting_changed.connect(_on_setting_changed, dispatch_uid="django_experience.conf.reload")


def _str(name: str, default: str) -> str:
    # None (``os.environ.get(...)`` of a missing variable, say) is no value: not "None".
    value = _lookup(name, _env.str, default)
    return default if value is None else str(value)


def _optional_str(name: str) -> str | None:
    value = _lookup(name, _env.str, None)
    return None if value in (None, "") else str(value)


def _float(name: str, default: float) -> float:
    return float(_lookup(name, _env.float, default))


def _int(name: str, default: int) -> int:
    return int(_lookup(name, _env.int, default))


def _bool(name: str, default: bool) -> bool:
    return bool(_lookup(name, _env.bool, default))


def _optional_bool(name: str) -> bool | None:
    value = _lookup(name, _env.bool, None)
    return None if value is None else bool(value)


def _list(name: str, default: list[str]) -> list[str]:
    return [str(item) for item in _as_list(_lookup(name, _env.list, default), ",")]


def _as_list(value: Any, separator: str | None) -> list[Any]:
    """A list setting's items. A string in the settings (a list would be iterated into its
    characters) is read as the environment form is: items split at ``separator``, or one item
    when there is none (a regex, whose commas are its own)."""
    if isinstance(value, str):
        items = value.split(separator) if separator else [value]
        return [item.strip() for item in items if item.strip()]
    return [] if value is None else list(value)


ALL_EXPERIENCES = "__all__"
"""The ``EXPERIENCE_STICKY_EXPERIENCES`` value that reports the variants of every experience."""

# What a list setting may be given as in Django's settings (a string is read as the environment
# form); anything else is a mistake, reported by a system check.
LIST_TYPES = (str, list, tuple, set, frozenset)


@dataclass(frozen=True)
class StickyExperiences:
    """The experiences whose rendered variants are reported (and so pinned by the API)."""

    every: bool = False
    ids: frozenset[str] = frozenset()

    def __contains__(self, experience_id: object) -> bool:
        return self.every or experience_id in self.ids

    def __bool__(self) -> bool:
        return self.every or bool(self.ids)


def sticky_experiences(value: Any) -> StickyExperiences:
    """``EXPERIENCE_STICKY_EXPERIENCES`` as configured: ``"__all__"`` (alone, or as an item:
    the environment's form is a one-item list), else the listed ids. A string is read like the
    other list settings (``"exp-a,exp-b"``); a value of any other type reports nothing (the
    system check names it)."""
    if not isinstance(value, LIST_TYPES):
        return StickyExperiences()
    items = [str(item).strip() for item in _as_list(value, ",")]
    if ALL_EXPERIENCES in items:
        return StickyExperiences(every=True)
    return StickyExperiences(ids=frozenset(item for item in items if item))


def _optional_callable(name: str) -> str | Callable[..., Any] | None:
    """A dotted path (settings or environment) or a callable (settings only)."""
    return cast("str | Callable[..., Any] | None", _lookup(name, _env.str, None))


def import_callable(path: str | Callable[..., Any]) -> Callable[..., Any]:
    """Resolve a dotted path (or accept a callable as is)."""
    if callable(path):
        return path
    return cast(Callable[..., Any], import_string(path))


class Settings:
    """Typed, lazily read ``EXPERIENCE_*`` settings."""

    @setting
    def ORGANIZATION_ID(self) -> str:
        return _str("EXPERIENCE_ORGANIZATION_ID", "")

    @setting
    def ENVIRONMENT(self) -> str:
        return _str("EXPERIENCE_ENVIRONMENT", "main")

    @setting
    def API_URL(self) -> str:
        return _str("EXPERIENCE_API_URL", DEFAULT_API_URL)

    @setting
    def MODE(self) -> str:
        return _str("EXPERIENCE_MODE", "update")

    @setting
    def TIMEOUT(self) -> float:
        """Total seconds one request may spend on the API, retries included."""
        return _float("EXPERIENCE_TIMEOUT", 1.0)

    @setting
    def MAX_RETRIES(self) -> int:
        return _int("EXPERIENCE_MAX_RETRIES", 1)

    @setting
    def COOKIE_NAME(self) -> str:
        return _str("EXPERIENCE_COOKIE_NAME", "ntaid")

    @setting
    def COOKIE_DOMAIN(self) -> str | None:
        return _optional_str("EXPERIENCE_COOKIE_DOMAIN")

    @setting
    def COOKIE_AGE(self) -> int:
        return _int("EXPERIENCE_COOKIE_AGE", 365 * 24 * 60 * 60)

    @setting
    def COOKIE_SECURE(self) -> bool | None:
        """``None`` (default): Secure exactly when the request came over HTTPS."""
        return _optional_bool("EXPERIENCE_COOKIE_SECURE")

    @property
    def EXCLUDE_PATHS(self) -> list[str]:
        """The configured regexes, else the defaults: favicon, robots.txt, ``STATIC_URL`` and
        ``MEDIA_URL``; then ``EXCLUDE_PATHS_EXTRA``. (With the defaults, the middleware also
        excludes the admin wherever its URLconf mounts it: that is not a setting, see
        ``middleware.classify``.)"""
        configured = self.EXCLUDE_PATHS_CONFIGURED
        base = default_exclude_paths() if configured is None else configured
        return [*base, *self.EXCLUDE_PATHS_EXTRA]

    @property
    def EXCLUDE_PATHS_CONFIGURED(self) -> list[str] | None:
        """``EXPERIENCE_EXCLUDE_PATHS`` as configured, ``None`` when it is not set."""
        value = _lookup("EXPERIENCE_EXCLUDE_PATHS", _env.list, None)
        return None if value is None else [str(item) for item in _as_list(value, None)]

    @property
    def EXCLUDE_PATHS_EXTRA(self) -> list[str]:
        """``EXPERIENCE_EXCLUDE_PATHS_EXTRA``: regexes excluded on top of ``EXCLUDE_PATHS``
        (the defaults, admin included, or the configured list), so adding one keeps them."""
        value = _lookup("EXPERIENCE_EXCLUDE_PATHS_EXTRA", _env.list, [])
        return [str(item) for item in _as_list(value, None)]

    @setting
    def USER_TRAITS(self) -> str | Callable[..., Any] | None:
        return _optional_callable("EXPERIENCE_USER_TRAITS")

    @setting
    def USER_ID(self) -> str | Callable[..., Any] | None:
        return _optional_callable("EXPERIENCE_USER_ID")

    @setting
    def CONSENT(self) -> str | Callable[..., Any] | None:
        return _optional_callable("EXPERIENCE_CONSENT")

    @property
    def FEATURES(self) -> list[str]:
        return _list("EXPERIENCE_FEATURES", [])

    @setting
    def TRUSTED_IP_HEADER(self) -> str | None:
        """A ``request.META`` key holding the client IP set by a trusted proxy."""
        return _optional_str("EXPERIENCE_TRUSTED_IP_HEADER")

    @setting
    def DELIVERY(self) -> str:
        return _str("EXPERIENCE_DELIVERY", "thread")

    @setting
    def PREFETCH(self) -> bool:
        """Send a page's profile update before its view runs when that view personalized its
        pages before (the API answers while the view works)."""
        return _bool("EXPERIENCE_PREFETCH", True)

    @setting
    def TRACK_COMPONENT_VIEWS(self) -> bool:
        """Send component view events for rendered variants (default: on in update mode)."""
        value = _optional_bool("EXPERIENCE_TRACK_COMPONENT_VIEWS")
        return self.MODE == "update" if value is None else value

    @property
    def STICKY_EXPERIENCES_CONFIGURED(self) -> Any:
        """``EXPERIENCE_STICKY_EXPERIENCES`` as given (for the system check)."""
        return _lookup("EXPERIENCE_STICKY_EXPERIENCES", _env.list, [])

    @setting
    def STICKY_EXPERIENCES(self) -> StickyExperiences:
        """The experiences whose rendered variants get component view events, which pin the
        variant for the visitor: the listed ids (those configured sticky in Contentful, as the
        browser SDK reports only those), or every experience for ``"__all__"``; none by
        default."""
        return sticky_experiences(self.STICKY_EXPERIENCES_CONFIGURED)

    @setting
    def BREAKER_THRESHOLD(self) -> int:
        return _int("EXPERIENCE_BREAKER_THRESHOLD", 5)

    @setting
    def BREAKER_COOLDOWN(self) -> float:
        return _float("EXPERIENCE_BREAKER_COOLDOWN", 30.0)

    @setting
    def DELETE_REMOTE_ON_USER_DELETE(self) -> bool:
        return _bool("EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE", False)

    @property
    def DESTINATIONS(self) -> dict[str, dict[str, Any]]:
        return cast(dict[str, dict[str, Any]], _lookup("EXPERIENCE_DESTINATIONS", _env.json, {}))


def default_exclude_paths() -> list[str]:
    """The default ``EXPERIENCE_EXCLUDE_PATHS`` (without the admin, found in the URLconf)."""
    defaults = [r"^/favicon\.ico$", r"^/robots\.txt$"]
    for url_setting in ("STATIC_URL", "MEDIA_URL"):
        url = getattr(settings, url_setting, None)
        if url and str(url).startswith("/") and str(url) != "/":
            defaults.append("^" + re.escape(str(url)))
    return defaults


conf = Settings()
