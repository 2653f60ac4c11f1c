"""Pytest fixtures for testing Django sites that use django-experience.

Loaded automatically (a ``pytest11`` entry point) wherever django-experience is installed:

- ``experience_emulator`` (function scope): an emulator of the Experience API shared by the
  whole test session, reset before each test, with ``settings.EXPERIENCE_API_URL`` (and the
  configured destinations) pointing at it; events queued for background delivery are dropped
  before and after each test, and remote profile deletions handed to the background thread are
  waited for (so none reaches another test's emulator). Returns an ``EmulatorHandle``:
  ``.url``, ``.organization_id``, ``.environment``, ``.reset()``, ``.configure(config)``,
  ``.faults(...)``, ``.clear_faults()``, ``.stats()``, ``.request_count(endpoint=None)``,
  ``.profiles()``, ``.profile(id)``, ``.destinations()``, ``.restrict(org, envs)``,
  ``.stop()``/``.start()`` and ``.client()``.
- ``experience_emulator_server`` (session scope): the underlying ``EmulatorServer``; needs no
  Django at all.

The start-up configuration (experiences and audiences) comes from the ini option
``experience_emulator_config`` or the environment variable ``EXPERIENCE_EMULATOR_CONFIG``
(path of a JSON file); every test starts from it again.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from django_experience.emulator.handle import EmulatorHandle
from django_experience.emulator.server import EmulatorServer

CONFIG_INI = "experience_emulator_config"
CONFIG_ENV = "EXPERIENCE_EMULATOR_CONFIG"
DEFAULT_ORGANIZATION = "emulator-org"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(CONFIG_INI, "JSON file of experiences and audiences for experience_emulator",
                  default="")


def _config_path(config: pytest.Config) -> Path | None:
    value = os.environ.get(CONFIG_ENV) or str(config.getini(CONFIG_INI) or "")
    if not value:
        return None
    path = Path(value)
    return path if path.is_absolute() else Path(str(config.rootpath)) / path


@pytest.fixture(scope="session")
def experience_emulator_server(pytestconfig: pytest.Config) -> Iterator[EmulatorServer]:
    """One emulator for the whole test session (Django-free)."""
    server = EmulatorServer(config=_config_path(pytestconfig)).start()
    try:
        yield server
    finally:
        server.stop()


def _django_settings(request: pytest.FixtureRequest) -> Any:
    """pytest-django's ``settings`` fixture (restored after the test), else a fallback."""
    if request.config.pluginmanager.has_plugin("django"):
        return request.getfixturevalue("settings")
    return None


@pytest.fixture
def experience_emulator(
    request: pytest.FixtureRequest, experience_emulator_server: EmulatorServer
) -> Iterator[EmulatorHandle]:
    """The session's emulator, reset, with the Django settings pointing at it."""
    server = experience_emulator_server
    server.start()  # a previous test may have stopped it
    _wait_for_deletions()  # of earlier tests: they would be counted by this emulator
    server.state.reset()
    settings = _django_settings(request)
    override = None
    organization = DEFAULT_ORGANIZATION
    environment = "main"
    _forget_queued_events()  # of earlier tests: they would reach this emulator
    if settings is not None:
        settings.EXPERIENCE_API_URL = server.url
        destinations = _emulated_destinations(server.url)
        if destinations is not None:
            settings.EXPERIENCE_DESTINATIONS = destinations
        from django_experience.conf import conf

        organization = conf.ORGANIZATION_ID or DEFAULT_ORGANIZATION
        if not conf.ORGANIZATION_ID:
            settings.EXPERIENCE_ORGANIZATION_ID = organization
        environment = conf.ENVIRONMENT or "main"
    else:
        try:
            from django.conf import settings as django_settings
            from django.test import override_settings

            if django_settings.configured:
                redirected: dict[str, Any] = {"EXPERIENCE_API_URL": server.url}
                destinations = _emulated_destinations(server.url)
                if destinations is not None:
                    redirected["EXPERIENCE_DESTINATIONS"] = destinations
                override = override_settings(**redirected)
                override.enable()
                organization = (
                    getattr(django_settings, "EXPERIENCE_ORGANIZATION_ID", "")
                    or DEFAULT_ORGANIZATION
                )
                environment = getattr(django_settings, "EXPERIENCE_ENVIRONMENT", "") or "main"
        except ImportError:
            pass
    handle = EmulatorHandle(server, organization_id=organization, environment=environment)
    try:
        yield handle
    finally:
        # While the settings still point at the emulator: what the test queued is dropped
        # here, or it would be sent after the test to the site's own API (production). Its
        # user deletions are waited for instead (while the database is still the test's): a
        # deletion is a row of the outbox, whose DELETE is what the test may check.
        _forget_queued_events()
        _wait_for_deletions()
        if override is not None:
            override.disable()
        server.start()
        server.state.set_faults(type(server.state.faults)())


def _forget_queued_events() -> None:
    """Drop the events waiting for background delivery (a send in flight ends first)."""
    from django.conf import settings as django_settings

    if django_settings.configured:
        from django_experience import delivery

        delivery.reset()


def _wait_for_deletions() -> None:
    """Wait until the remote profile deletions handed to the background have been sent (each
    ``DELETE`` ends within ``EXPERIENCE_TIMEOUT``). None can be in flight when the module was
    never imported."""
    if "django_experience.deletions" in sys.modules:
        from django_experience import deletions

        deletions.wait()


def _emulated_destinations(emulator_url: str) -> dict[str, Any] | None:
    """``EXPERIENCE_DESTINATIONS`` with each destination's ``url`` at the emulator (tokens
    kept: the emulator takes any), so sign-ins in tests never upsert real profiles. ``None``
    when none are configured."""
    from django.conf import settings as django_settings

    from django_experience.emulator.destinations import EXPERITURE_PREFIX, RELEVA_PREFIX

    configured = getattr(django_settings, "EXPERIENCE_DESTINATIONS", None)
    if not isinstance(configured, dict) or not configured:
        return None
    served = {"experiture": EXPERITURE_PREFIX, "releva": RELEVA_PREFIX}
    return {
        name: {**options, "url": emulator_url + served[name]}
        if name in served and isinstance(options, dict)
        else options
        for name, options in configured.items()
    }
