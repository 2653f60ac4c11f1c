"""Identify fan-out: a visitor's traits go to every configured destination in the background."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django_experience.conf import conf
from django_experience.destinations.sinks import DESTINATION_NAMES
from django_experience.destinations.values import ValueProblem, to_json

logger = logging.getLogger("django_experience.destinations")


def upsert_to_destinations(user_id: str, traits: Mapping[str, Any], user: Any = None) -> None:
    """Queue an upsert of ``traits`` to each destination in ``EXPERIENCE_DESTINATIONS``.

    Called when a visitor is identified, after the consent check: the caller decides whether
    the person agreed. Sent through background delivery (never in the request); never raises.
    Both platforms find profiles by email, so a Django ``user``'s email is added when the traits
    have none. Nothing is queued without traits (there would be nothing to upsert).
    """
    try:
        email = getattr(user, "email", None)
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


def _json_ready(traits: Mapping[str, Any]) -> dict[str, Any]:
    """Traits as JSON (datetimes as ISO 8601), so any task backend can store the job.

    Naive datetimes are kept naive here: each destination decides (Experiture refuses them,
    naming the field).
    """
    return {str(name): to_json(value, str(name), require_zone=False)
            for name, value in traits.items()}


__all__ = ["upsert_to_destinations"]
