"""System checks."""

from __future__ import annotations

from typing import Any

import pytest
from django.core.checks import run_checks

AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
OURS = "django_experience.middleware.ExperienceMiddleware"
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"


def _ids() -> set[str]:
    return {m.id for m in run_checks() if m.id and m.id.startswith("django_experience.")}


def test_the_test_settings_pass() -> None:
    assert _ids() == set()


def test_missing_organization(settings: Any) -> None:
    settings.EXPERIENCE_ORGANIZATION_ID = ""
    assert _ids() == {"django_experience.E001"}


@pytest.mark.parametrize(
    ("middleware", "expected"),
    [
        ([SESSIONS, OURS, AUTH], {"django_experience.E002"}),
        ([SESSIONS, OURS], {"django_experience.E002"}),
        ([SESSIONS, AUTH], {"django_experience.W001"}),
        ([SESSIONS, AUTH, OURS], set()),
        (
            [SESSIONS, "tests.middleware.views.SiteAuthenticationMiddleware", OURS],
            set(),  # a subclass of AuthenticationMiddleware counts
        ),
    ],
)
def test_middleware_order(settings: Any, middleware: list[str], expected: set[str]) -> None:
    settings.MIDDLEWARE = middleware
    assert _ids() == expected


def test_unknown_mode(settings: Any) -> None:
    settings.EXPERIENCE_MODE = "turbo"
    assert _ids() == {"django_experience.E003"}


@pytest.mark.parametrize(
    ("mode", "track", "listed", "warned"),
    [
        ("preflight", None, ["exp-a"], True),  # views are off by default in preflight mode
        ("preflight", None, "__all__", True),
        ("update", False, ["exp-a"], True),
        ("preflight", True, ["exp-a"], False),
        ("update", None, ["exp-a"], False),
        ("preflight", None, [], False),  # the browser SDK reports the views: nothing listed
    ],
)
def test_sticky_experiences_without_component_views(
    settings: Any, mode: str, track: bool | None, listed: Any, warned: bool
) -> None:
    settings.EXPERIENCE_MODE = mode
    settings.EXPERIENCE_TRACK_COMPONENT_VIEWS = track
    settings.EXPERIENCE_STICKY_EXPERIENCES = listed
    messages = [m for m in run_checks() if m.id and m.id.startswith("django_experience.")]
    assert [m.id for m in messages] == (["django_experience.W002"] if warned else [])
    if warned:
        expected = "is False" if mode == "update" else "the default in preflight mode"
        assert expected in messages[0].msg


@pytest.mark.parametrize(
    "url", ["experience.ninetailed.co", "ftp://host", "https://", "http://host:port", "https://h?x=1"]
)
def test_malformed_api_url(settings: Any, url: str) -> None:
    settings.EXPERIENCE_API_URL = url
    assert _ids() == {"django_experience.E004"}


def test_good_api_urls(settings: Any) -> None:
    for url in ("https://experience.ninetailed.co", "http://127.0.0.1:8765/prefix"):
        settings.EXPERIENCE_API_URL = url
        assert _ids() == set()


@pytest.mark.parametrize("name", ["USER_TRAITS", "USER_ID", "CONSENT"])
def test_dotted_paths_that_do_not_import(settings: Any, name: str) -> None:
    setattr(settings, f"EXPERIENCE_{name}", "tests.middleware.views.does_not_exist")
    messages = [m for m in run_checks() if m.id == "django_experience.E005"]
    assert len(messages) == 1 and f"EXPERIENCE_{name}" in messages[0].msg
    setattr(settings, f"EXPERIENCE_{name}", "tests.middleware.views.__doc__")  # not callable
    assert _ids() == {"django_experience.E005"}
    setattr(settings, f"EXPERIENCE_{name}", "tests.middleware.views.user_traits")
    assert _ids() == set()
    setattr(settings, f"EXPERIENCE_{name}", lambda value: {})
    assert _ids() == set()


def test_a_callable_whose_module_fails_to_import_is_reported(settings: Any) -> None:
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.fails_on_import.traits"
    messages = [m for m in run_checks() if m.id == "django_experience.E005"]
    assert len(messages) == 1
    assert "RuntimeError: this module cannot be imported" in messages[0].msg


def test_an_organization_id_of_none_is_missing(settings: Any) -> None:
    settings.EXPERIENCE_ORGANIZATION_ID = None  # os.environ.get() of an unset variable
    assert "django_experience.E001" in _ids()


def test_invalid_exclude_regex(settings: Any, client: Any) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS = ["^/ok/", "([unclosed"]
    assert _ids() == {"django_experience.E006"}


def test_invalid_extra_exclude_regex_is_named_by_its_setting(settings: Any) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS_EXTRA = [r"^/ok/", "(unclosed"]
    messages = [m for m in run_checks() if m.id == "django_experience.E006"]
    assert [m.msg.split(" entry")[0] for m in messages] == ["EXPERIENCE_EXCLUDE_PATHS_EXTRA"]
    assert "'(unclosed'" in messages[0].msg


@pytest.mark.parametrize("value", ["threads", "Thread", "celery", ""])
def test_unknown_delivery_backend(settings: Any, value: str) -> None:
    settings.EXPERIENCE_DELIVERY = value
    messages = [m for m in run_checks() if m.id == "django_experience.E007"]
    assert _ids() == {"django_experience.E007"}
    assert repr(value) in messages[0].msg


@pytest.mark.parametrize("value", ["thread", "tasks", "sync"])
def test_known_delivery_backends(settings: Any, value: str) -> None:
    settings.EXPERIENCE_DELIVERY = value
    assert _ids() == set()


def test_tasks_delivery_without_django_tasks(settings: Any, monkeypatch: Any) -> None:
    from django_experience import checks

    monkeypatch.setattr(checks, "TASK_MODULES", ("django.no_tasks_here", "no_tasks_backport"))
    settings.EXPERIENCE_DELIVERY = "tasks"
    [message] = [m for m in run_checks() if m.id == "django_experience.E007"]
    assert "django_tasks" in message.msg and "django.tasks" in message.msg
    settings.EXPERIENCE_DELIVERY = "thread"
    assert _ids() == set()


@pytest.mark.parametrize(
    "value",
    [True, 7, {"exp-a": True}, ["exp-a", 3], ["exp-a", ""], ["__all__", "exp-a"]],
)
def test_bad_sticky_experiences(settings: Any, value: Any) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = value
    assert _ids() == {"django_experience.E008"}


@pytest.mark.parametrize(
    "value", [None, [], "__all__", ["__all__"], "exp-a,exp-b", ("exp-a",), {"exp-a"}]
)
def test_good_sticky_experiences(settings: Any, value: Any) -> None:
    settings.EXPERIENCE_STICKY_EXPERIENCES = value
    assert _ids() == set()


@pytest.mark.parametrize(
    "url", ["https://bad..example", f"https://{'a' * 64}.example", "https://user:s3cret@bad..example"]
)
def test_an_api_url_whose_host_no_resolver_takes(settings: Any, url: str) -> None:
    settings.EXPERIENCE_API_URL = url
    (message,) = [m for m in run_checks() if m.id == "django_experience.E004"]
    assert "s3cret" not in message.msg  # the check's output is logged


def test_an_api_url_with_credentials_is_shown_without_them(settings: Any) -> None:
    settings.EXPERIENCE_API_URL = "https://user:s3cret@experience.example?x=1"
    (message,) = [m for m in run_checks() if m.id == "django_experience.E004"]
    assert "s3cret" not in message.msg and "***@experience.example" in message.msg


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("EXPERIENCE_TIMEOUT", "soon", "a positive number of seconds"),
        ("EXPERIENCE_TIMEOUT", 0, "a positive number of seconds"),
        ("EXPERIENCE_TIMEOUT", -1.5, "a positive number of seconds"),
        ("EXPERIENCE_TIMEOUT", float("nan"), "a positive number of seconds"),
        ("EXPERIENCE_TIMEOUT", float("inf"), "a positive number of seconds"),
        ("EXPERIENCE_MAX_RETRIES", -1, "a whole number, 0 or more"),
        ("EXPERIENCE_MAX_RETRIES", "two", "a whole number, 0 or more"),
        ("EXPERIENCE_COOKIE_AGE", 0, "a positive number of seconds"),
        ("EXPERIENCE_COOKIE_AGE", None, "a positive number of seconds"),
        # past the year 9999 no cookie's expires can be written: every response failed to set it
        ("EXPERIENCE_COOKIE_AGE", 10**12, "at most 100 years"),
        ("EXPERIENCE_COOKIE_AGE", float("inf"), "a positive number of seconds"),
        ("EXPERIENCE_MAX_RETRIES", float("inf"), "a whole number, 0 or more"),
        ("EXPERIENCE_BREAKER_THRESHOLD", float("-inf"), "a whole number, 1 or more"),
        ("EXPERIENCE_BREAKER_THRESHOLD", 0, "a whole number, 1 or more"),
        ("EXPERIENCE_BREAKER_COOLDOWN", -1, "a number of seconds, 0 or more"),
        ("EXPERIENCE_DELIVERY_TIMEOUT", "ten", "it cannot be used (could not convert"),
        ("EXPERIENCE_DELIVERY_BATCH_SIZE", [200], "it cannot be used ("),
        ("EXPERIENCE_DELIVERY_QUEUE_SIZE", float("inf"), "it cannot be used (cannot convert"),
        ("EXPERIENCE_DELIVERY_DROP", "middle", "it cannot be used (EXPERIENCE_DELIVERY_DROP must"),
    ],
)
def test_values_that_cannot_be_used(settings: Any, name: str, value: Any, says: str) -> None:
    setattr(settings, name, value)
    messages = [m for m in run_checks() if m.id == "django_experience.E009"]
    assert [m.msg.split(";")[0] for m in messages] == [f"{name} is {value!r}"]
    assert says in messages[0].msg


def test_a_value_from_the_environment_is_checked(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    del settings.EXPERIENCE_TIMEOUT  # read from the environment then, if it is there at all
    monkeypatch.setenv("EXPERIENCE_TIMEOUT", "-2")
    from django_experience.conf import reload

    reload()
    try:
        messages = [m.msg for m in run_checks() if m.id == "django_experience.E009"]
    finally:
        monkeypatch.delenv("EXPERIENCE_TIMEOUT")
        reload()
    assert messages == ["EXPERIENCE_TIMEOUT is '-2'; it must be a positive number of seconds."]


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("EXPERIENCE_TIMEOUT", 0.25),
        ("EXPERIENCE_MAX_RETRIES", 0),
        ("EXPERIENCE_BREAKER_COOLDOWN", 0),
        ("EXPERIENCE_COOKIE_AGE", 100 * 365 * 24 * 60 * 60),
        ("EXPERIENCE_DELIVERY_BATCH_SIZE", 0),  # raised to its minimum, as documented
        ("EXPERIENCE_DELIVERY_DROP", "newest"),
    ],
)
def test_values_that_can_be_used(settings: Any, name: str, value: Any) -> None:
    setattr(settings, name, value)
    assert _ids() == set()


@pytest.mark.parametrize("name", ["nt aid", "nt;aid", "a=b", "", "é"])
def test_a_cookie_name_no_cookie_can_have(settings: Any, name: str) -> None:
    settings.EXPERIENCE_COOKIE_NAME = name
    messages = [m.msg for m in run_checks() if m.id == "django_experience.E010"]
    assert messages == [
        f"EXPERIENCE_COOKIE_NAME {name!r} is not a name a cookie can have: every response "
        "would fail to set it."
    ]


@pytest.mark.parametrize("name", ["ntaid", "ctfl-opt-aid", "visitor_id", "a.b"])
def test_cookie_names_that_work(settings: Any, name: str) -> None:
    settings.EXPERIENCE_COOKIE_NAME = name
    assert _ids() == set()


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ({"releva": {"secret": "k"}}, "unknown option(s) secret"),
        ({"experiture": {"url": "http://x"}}, "needs a 'token'"),
        ({"experiture": {"token": "t", "timeout": "10"}}, "['timeout'] must be a"),
        (["releva"], "must be a dict"),
    ],
)
def test_destinations_that_cannot_be_built_are_reported(
    settings: Any, value: Any, says: str
) -> None:
    # Before, the mistake surfaced when the first profile was sent, as a failure of each one.
    settings.EXPERIENCE_DESTINATIONS = value
    (message,) = [m for m in run_checks() if m.id == "django_experience.E011"]
    assert message.msg.startswith("EXPERIENCE_DESTINATIONS cannot be used: ")
    assert says in message.msg


def test_destinations_that_can_be_built_pass(settings: Any) -> None:
    settings.EXPERIENCE_DESTINATIONS = {
        "experiture": {"token": "t", "timeout": 2, "max_retries": 0},
        "releva": {"secret_key": "k", "timeout": 0.5, "batch_size": 10},
    }
    assert "django_experience.E011" not in _ids()


def test_a_mysql_connection_with_a_three_byte_charset_is_warned_about(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from django.db import connection

    from django_experience.checks import check_mapping_charset

    if connection.vendor != "mysql":
        pytest.skip("reads a MySQL connection's parameters (the suite's MySQL run)")
    assert check_mapping_charset() == []  # utf8mb4, Django 5.2's default
    options = {**connection.settings_dict["OPTIONS"], "charset": "utf8"}  # Django 4.2's
    monkeypatch.setitem(connection.settings_dict, "OPTIONS", options)
    [warning] = check_mapping_charset()
    assert warning.id == "django_experience.W003"
    assert "'default'" in warning.msg and "'utf8'" in warning.msg
    assert "'utf8mb4'" in str(warning.hint)
