"""Identify fan-out: a visitor's traits go to every configured destination in the background."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from django_experience.conf import conf
from django_experience.destinations.sinks import DESTINATION_NAMES
from django_experience.destinations.values import ValueProblem, to_json

logger = logging.getLogger("django_experience.destinations")

REPEAT_WINDOW = 300.0  # seconds during which the same upsert is not queued again
REMEMBERED_MAX = 10_000


class RecentUpserts:
    """The last upsert queued for each person lately, in this process.

    A signed-in user whom the Experience API could not identify is identified again on each
    page; without this, an outage of that API would queue the same upsert for every page view
    and crowd the shared delivery queue. Only the latest upsert per person counts (a change
    back to earlier traits is queued again), and only hashes are kept, never traits.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: OrderedDict[str, tuple[str, float]] = OrderedDict()  # who -> (what, when)

    def first_time(self, who: str, what: str, now: float | None = None) -> bool:
        """False when ``what`` is what was queued for ``who`` within the window; else True,
        and ``what`` becomes the latest for ``who``."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._last:
                oldest, (_, queued_at) = next(iter(self._last.items()))
                if now - queued_at < REPEAT_WINDOW and len(self._last) < REMEMBERED_MAX:
                    break
                del self._last[oldest]
            last = self._last.pop(who, None)
            if last is not None and last[0] == what and now - last[1] < REPEAT_WINDOW:
                self._last[who] = last  # the window runs from the upsert actually queued
                return False
            self._last[who] = (what, now)
            return True

    def clear(self) -> None:
        with self._lock:
            self._last.clear()

    def after_fork(self) -> None:
        self._lock = threading.Lock()  # another thread of the parent may have held it


recent = RecentUpserts()


def upsert_to_destinations(user_id: str, traits: Mapping[str, Any], user: Any = None) -> None:
    """Queue an upsert of ``traits`` to each destination in ``EXPERIENCE_DESTINATIONS``.

    Called when a visitor is identified, after the consent check: the caller decides whether
    the person agreed. Sent through background delivery (never in the request); never raises.
    Both platforms find profiles by email, so a Django ``user``'s email is added when the traits
    have none. Nothing is queued without traits (there would be nothing to upsert).
    """
    try:
        email_field = getattr(user, "get_email_field_name", lambda: "email")()
        email = getattr(user, email_field, None)
        if email and isinstance(email, str) and not (traits or {}).get("email"):
            traits = {**traits, "email": email}
        config = conf.DESTINATIONS or {}
        names = [name for name in config if name in DESTINATION_NAMES]
        unknown = sorted(str(name) for name in config if name not in DESTINATION_NAMES)
        if unknown:
            logger.error(
                "EXPERIENCE_DESTINATIONS names unknown destination(s) %s (known: %s)",
                ", ".join(unknown), ", ".join(DESTINATION_NAMES),
            )
        if not names or not traits:
            return
        payload = {"userId": str(user_id), "traits": _json_ready(traits)}
        destinations = {name: config[name] for name in names}
        if not recent.first_time(
            _fingerprint(user_id, destinations), _fingerprint(payload, destinations)
        ):
            logger.debug("Destination upsert not queued: the same one was queued lately")
            return
    except ValueProblem as problem:
        # Only the trait's name: trait values stay out of the logs.
        logger.error("Destination upsert not queued: trait %s cannot be sent", problem.field)
        return
    except Exception:
        logger.exception("Destination upsert could not be queued")
        return
    from django_experience import delivery

    for name in names:
        delivery.enqueue(dict(payload), sink=name)  # never raises


def _fingerprint(*parts: Any) -> str:
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _json_ready(traits: Mapping[str, Any]) -> dict[str, Any]:
    """Traits as JSON (datetimes as ISO 8601), so any task backend can store the job.

    Naive datetimes are kept naive here: each destination decides (Experiture refuses them,
    naming the field).
    """
    return {str(name): to_json(value, str(name), require_zone=False)
            for name, value in traits.items()}


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=recent.after_fork)


__all__ = ["REPEAT_WINDOW", "RecentUpserts", "recent", "upsert_to_destinations"]
