"""Other emulated services served by the same server under a path prefix.

A mount is a WSGI app with optional ``reset()`` (called by ``POST /__emulator__/reset``) and
``snapshot()`` (what it stored, shown by ``GET /__emulator__/destinations`` under the prefix's
name, e.g. ``"experiture"``). The app sees the standard WSGI mount convention: ``SCRIPT_NAME`` is
the prefix without its trailing slash and ``PATH_INFO`` the rest, starting with ``/``.

Services register themselves once, at import time of their module, with one line::

    register_mount("/experiture/", experiture_app, reset=reset, snapshot=snapshot)

``default_mounts()`` imports ``django_experience.emulator.destinations`` (when present), so its
registrations (or a module-level ``EMULATOR_MOUNTS = {prefix: app}``) are served by every
emulator started without an explicit ``mounts`` argument.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("django_experience.emulator")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

DEFAULT_MOUNT_MODULES = ("django_experience.emulator.destinations",)


@dataclass(frozen=True)
class Mount:
    prefix: str
    app: WSGIApp
    reset: Callable[[], Any] | None = None
    snapshot: Callable[[], Any] | None = None

    @property
    def name(self) -> str:
        return self.prefix.strip("/")


_registered: dict[str, Mount] = {}


def normalize_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if not prefix.endswith("/"):
        prefix += "/"
    if prefix == "/" or prefix.startswith("/__emulator__/") or prefix.startswith("/v2/"):
        raise ValueError(f"mount prefix {prefix!r} would hide the Experience API")
    return prefix


def as_mount(prefix: str, app: WSGIApp | Mount) -> Mount:
    """A ``Mount`` for ``app``; ``reset``/``snapshot`` attributes of the app are used."""
    prefix = normalize_prefix(prefix)
    if isinstance(app, Mount):
        return Mount(prefix, app.app, app.reset, app.snapshot)
    return Mount(prefix, app, getattr(app, "reset", None), getattr(app, "snapshot", None))


def register_mount(
    prefix: str,
    app: WSGIApp,
    *,
    reset: Callable[[], Any] | None = None,
    snapshot: Callable[[], Any] | None = None,
) -> None:
    """Serve ``app`` under ``prefix`` in every emulator that uses the default mounts."""
    mount = as_mount(prefix, app)
    _registered[mount.prefix] = Mount(
        mount.prefix, mount.app, reset or mount.reset, snapshot or mount.snapshot
    )


def default_mounts() -> dict[str, Mount]:
    for module_name in DEFAULT_MOUNT_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                logger.exception("cannot import %s", module_name)
            continue
        except Exception:  # a broken optional service must not stop the emulator
            logger.exception("cannot import %s", module_name)
            continue
        declared = getattr(module, "EMULATOR_MOUNTS", None)
        if isinstance(declared, Mapping):
            for prefix, app in declared.items():
                mount = as_mount(prefix, app)
                _registered.setdefault(mount.prefix, mount)
    return dict(_registered)


def build_mounts(mounts: Mapping[str, WSGIApp | Mount] | None) -> dict[str, Mount]:
    if mounts is None:
        return default_mounts()
    return {m.prefix: m for m in (as_mount(p, a) for p, a in mounts.items())}
