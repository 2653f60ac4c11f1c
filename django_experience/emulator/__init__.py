"""A local, in-memory emulator of the Experience API (no account, no network).

Django-free: ``make_app(state, mounts)`` is a WSGI app for any WSGI server, ``EmulatorServer``
serves it from a background thread, and ``python -m django_experience.emulator`` runs it.
"""

from django_experience.emulator.app import EmulatorApp, make_app
from django_experience.emulator.config import EmulatorConfig
from django_experience.emulator.errors import ConfigError
from django_experience.emulator.faults import Faults
from django_experience.emulator.handle import EmulatorHandle
from django_experience.emulator.mounts import Mount, register_mount
from django_experience.emulator.server import EmulatorServer
from django_experience.emulator.state import EmulatorState

__all__ = [
    "ConfigError",
    "EmulatorApp",
    "EmulatorConfig",
    "EmulatorHandle",
    "EmulatorServer",
    "EmulatorState",
    "Faults",
    "Mount",
    "make_app",
    "register_mount",
]
