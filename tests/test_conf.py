"""Settings: Django's settings first, then the environment, then the default; remembered until a
setting changes."""

from __future__ import annotations

from typing import Any

import pytest

from django_experience import conf as conf_module
from django_experience.conf import conf


@pytest.fixture(autouse=True)
def fresh_conf() -> Any:
    conf_module.reload()
    yield
    conf_module.reload()


def test_default_then_environment_then_django_settings(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    del settings.EXPERIENCE_ENVIRONMENT  # not in Django's settings: the default
    assert conf.ENVIRONMENT == "main"
    monkeypatch.setenv("EXPERIENCE_ENVIRONMENT", "staging")
    monkeypatch.setenv("EXPERIENCE_TIMEOUT", "0.8")
    conf_module.reload()
    assert conf.ENVIRONMENT == "staging" and conf.TIMEOUT == 0.8
    settings.EXPERIENCE_ENVIRONMENT = "production"  # Django's settings win
    assert conf.ENVIRONMENT == "production"


def test_override_settings_is_seen_at_once(settings: Any) -> None:
    settings.EXPERIENCE_MODE = "update"
    assert conf.MODE == "update"
    settings.EXPERIENCE_MODE = "preflight"
    assert conf.MODE == "preflight"
    del settings.EXPERIENCE_MODE
    assert conf.MODE == "update"


def test_defaults_that_follow_other_settings(settings: Any) -> None:
    settings.STATIC_URL = "/assets/"
    assert r"^/assets/" in conf.EXCLUDE_PATHS
    settings.STATIC_URL = "/static-files/"
    assert r"^/static\-files/" in conf.EXCLUDE_PATHS


def test_extra_exclude_paths_follow_the_defaults_or_the_configured_list(settings: Any) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS_EXTRA = [r"^/health/"]
    assert conf.EXCLUDE_PATHS[-1] == r"^/health/"
    assert r"^/robots\.txt$" in conf.EXCLUDE_PATHS
    settings.EXPERIENCE_EXCLUDE_PATHS = [r"^/api/"]
    assert conf.EXCLUDE_PATHS == [r"^/api/", r"^/health/"]


def test_a_string_for_a_list_setting_is_not_read_character_by_character(settings: Any) -> None:
    settings.EXPERIENCE_FEATURES = "location, ip-enrichment"
    assert conf.FEATURES == ["location", "ip-enrichment"]
    settings.EXPERIENCE_EXCLUDE_PATHS_EXTRA = r"^/health/"
    assert conf.EXCLUDE_PATHS[-1] == r"^/health/"
    settings.EXPERIENCE_EXCLUDE_PATHS = r"^/a{1,3}/"  # one regex: its comma is its own
    assert conf.EXCLUDE_PATHS == [r"^/a{1,3}/", r"^/health/"]


def test_a_setting_of_none_is_unset(settings: Any) -> None:
    settings.EXPERIENCE_ORGANIZATION_ID = None
    settings.EXPERIENCE_ENVIRONMENT = None
    assert conf.ORGANIZATION_ID == "" and conf.ENVIRONMENT == "main"


def test_returned_lists_are_copies(settings: Any) -> None:
    settings.EXPERIENCE_FEATURES = ["location"]
    conf.FEATURES.append("ip-enrichment")
    assert conf.FEATURES == ["location"]


def test_remembered_values_follow_every_change(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_experience.delivery.settings import delivery_settings

    settings.EXPERIENCE_MODE = "preflight"
    assert conf.TRACK_COMPONENT_VIEWS is False  # derived from MODE, remembered
    settings.EXPERIENCE_MODE = "update"
    assert conf.TRACK_COMPONENT_VIEWS is True
    assert delivery_settings.BATCH_SIZE == 200
    monkeypatch.setenv("EXPERIENCE_DELIVERY_BATCH_SIZE", "7")
    assert delivery_settings.BATCH_SIZE == 200  # the environment is read again on reload()
    conf_module.reload()
    assert delivery_settings.BATCH_SIZE == 7
    settings.EXPERIENCE_DELIVERY_BATCH_SIZE = 0
    assert delivery_settings.BATCH_SIZE == 1  # still checked and clamped
