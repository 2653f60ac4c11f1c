"""Plug the destinations into delivery and the import, at app start-up (``AppConfig.ready``).

Every process that loads the app (web servers, task workers, management commands) gets the
delivery sinks, so a job queued by one process can be sent by another. The import offers
``--destination experiture|releva`` (and includes them in ``all``) only for the destinations
``EXPERIENCE_DESTINATIONS`` configures; the offer follows changes of the setting (tests).
"""

from __future__ import annotations

from typing import Any

from django.test.signals import setting_changed

from django_experience.destinations.fanout import recent
from django_experience.destinations.import_targets import TARGETS
from django_experience.destinations.sinks import configured_options, register_sinks
from django_experience.sync import targets


def sync_import_targets() -> None:
    """Offer an import target for each configured destination, and only for those."""
    for name, target in TARGETS.items():
        try:
            configured = configured_options(name) is not None
        except ValueError:
            configured = False  # reported by the destination's own checks when used
        if configured:
            targets.register_target(name, target)
        else:
            # The import module has no "unregister" yet; its registry is a plain dict.
            targets._targets.pop(name, None)


def _on_setting_changed(sender: Any, setting: str = "", **kwargs: Any) -> None:
    if setting == "EXPERIENCE_DESTINATIONS":
        sync_import_targets()
        recent.clear()  # new destinations: nothing was queued for them yet


def connect() -> None:
    """Register the delivery sinks and the import targets; follow setting changes."""
    register_sinks()
    sync_import_targets()
    setting_changed.connect(
        _on_setting_changed, dispatch_uid="django_experience.destinations.import_targets"
    )


__all__ = ["connect", "sync_import_targets"]
