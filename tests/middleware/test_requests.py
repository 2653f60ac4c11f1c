"""Personalized requests through the test client against the emulator: cookie, modes, laziness."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client, RequestFactory

from django_experience import delivery
from django_experience.conf import reload as conf_reload
from django_experience.emulator.handle import EmulatorHandle
from django_experience.middleware import EXCLUDED, PERSONALIZED, _compile_exclusions, classify

pytestmark = pytest.mark.django_db


def _json(response: Any) -> dict[str, Any]:
    assert response.status_code == 200
    data: dict[str, Any] = response.json()
    return data


def test_first_visit_creates_a_profile_and_sets_the_cookie(
    client: Client, emulator: EmulatorHandle
) -> None:
    response = client.get("/mw/page/?utm_campaign=spring", HTTP_USER_AGENT="Mozilla/5.0 Test")
    data = _json(response)
    assert data["hero"] == "hero-new" and data["degraded"] is False
    cookie = response.cookies["ntaid"]
    assert cookie.value == data["profile"]
    assert cookie["path"] == "/"
    assert cookie["max-age"] == 365 * 24 * 60 * 60
    assert cookie["samesite"] == "Lax"
    assert not cookie["httponly"]
    assert not cookie["secure"]
    assert emulator.stats()["requests"] == {"create": {"200": 1}}
    stored = emulator.profile(data["profile"])
    assert stored is not None
    (page,) = stored["events"]
    assert page["type"] == "page"
    assert page["context"]["campaign"] == {"name": "spring"}
    assert page["context"]["userAgent"] == "Mozilla/5.0 Test"
    assert page["context"]["page"]["url"] == "http://testserver/mw/page/?utm_campaign=spring"


def test_returning_visitor_updates_the_same_profile_and_renews_its_cookie(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_COOKIE_AGE = 3600
    first = _json(client.get("/mw/page/"))
    response = client.get("/mw/page/", HTTP_REFERER="https://search.example/")
    second = _json(response)
    assert second["profile"] == first["profile"]
    # Rewritten after every answer, as the browser SDK does: the lifetime runs from the last
    # visit, so a visitor who keeps coming back keeps their profile.
    assert response.cookies["ntaid"].value == first["profile"]
    assert response.cookies["ntaid"]["max-age"] == 3600
    assert "private" in response["Cache-Control"]
    assert emulator.request_count("update") == 1
    stored = emulator.profile(first["profile"])
    assert stored is not None and len(stored["events"]) == 2
    assert stored["events"][1]["context"]["page"]["referrer"] == "https://search.example/"
    assert "ntaid" not in client.get("/mw/plain/").cookies  # used nothing: stays cacheable


def test_secure_cookie_on_https_and_configured_domain(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_COOKIE_DOMAIN = ".example.com"
    settings.EXPERIENCE_COOKIE_AGE = 3600
    response = client.get("/mw/page/", secure=True)
    cookie = response.cookies["ntaid"]
    assert cookie["secure"] and cookie["domain"] == ".example.com" and cookie["max-age"] == 3600


def test_configured_cookie_name_and_the_newer_sdk_cookie(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    profile_id = _json(client.get("/mw/page/"))["profile"]
    fresh = Client()
    fresh.cookies["ctfl-opt-aid"] = profile_id
    response = fresh.get("/mw/page/")
    assert _json(response)["profile"] == profile_id
    assert response.cookies["ntaid"].value == profile_id  # written under our own name
    settings.EXPERIENCE_COOKIE_NAME = "visitor"
    other = Client()
    other.cookies["visitor"] = profile_id
    assert _json(other.get("/mw/page/"))["profile"] == profile_id


def test_lazy_no_call_until_asked_and_at_most_one_per_request(
    client: Client, emulator: EmulatorHandle
) -> None:
    response = client.get("/mw/plain/")
    assert response.status_code == 200
    # The page view still went out, through background delivery (the batch endpoint).
    assert emulator.stats()["requests"] == {"batch": {"200": 1}}
    profile_id = response.cookies["ntaid"].value
    stored = emulator.profile(profile_id)
    assert stored is not None and [e["type"] for e in stored["events"]] == ["page"]
    _json(client.get("/mw/page/"))  # reads profile, variant, change, merge tag, degraded
    assert emulator.request_count("update") == 1 and emulator.request_count("create") == 0


def test_preflight_mode(client: Client, emulator: EmulatorHandle, settings: Any) -> None:
    settings.EXPERIENCE_MODE = "preflight"
    response = client.get("/mw/plain/")
    assert emulator.request_count() == 0  # unused: no call, no page view
    assert "ntaid" not in response.cookies
    response = client.get("/mw/page/?utm_campaign=spring")
    data = _json(response)
    assert data["hero"] == "hero-new"
    assert response.cookies["ntaid"].value == data["profile"]  # a fresh id for the browser SDK
    assert emulator.stats()["requests"] == {"update": {"200": 1}}
    assert emulator.profiles() == []  # nothing stored
    again = client.get("/mw/page/")
    assert _json(again)["profile"] == data["profile"]
    assert again.cookies["ntaid"].value == data["profile"]  # the same id, renewed
    plain = client.get("/mw/plain/")
    assert "ntaid" not in plain.cookies  # a page that used nothing stays cacheable


@pytest.mark.parametrize(
    "cookie",
    ["../../etc/passwd", "a" * 65, "", "id with spaces", "p%2F1", "<script>", "é"],
)
def test_tampered_cookies_are_ignored_replaced_and_never_sent(
    client: Client, emulator: EmulatorHandle, cookie: str
) -> None:
    client.cookies["ntaid"] = cookie
    response = client.get("/mw/page/")
    data = _json(response)
    assert response.cookies["ntaid"].value == data["profile"] != cookie
    assert emulator.stats()["requests"] == {"create": {"200": 1}}


def test_deleted_profile_recovers_in_the_same_request(
    client: Client, emulator: EmulatorHandle
) -> None:
    first = _json(client.get("/mw/page/"))["profile"]
    emulator.client().delete_profile(first)
    response = client.get("/mw/page/")
    data = _json(response)
    assert data["degraded"] is False and data["profile"] != first
    assert response.cookies["ntaid"].value == data["profile"]
    requests = emulator.stats()["requests"]
    assert requests["update"] == {"404": 1} and requests["create"] == {"200": 2}


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/mw/excluded/page/", {}),
        ("/static/app.css", {}),
        ("/mw/page/", {"HTTP_USER_AGENT": "Mozilla/5.0 (compatible; Googlebot/2.1)"}),
        ("/mw/page/", {"HTTP_SEC_PURPOSE": "prefetch;prerender"}),
        ("/mw/page/", {"HTTP_PURPOSE": "prefetch"}),
    ],
)
def test_excluded_requests_cost_nothing(
    client: Client, emulator: EmulatorHandle, settings: Any, path: str, headers: dict[str, str]
) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS = [r"^/mw/excluded/", r"^/static/"]
    response = client.get(path, **headers)  # type: ignore[arg-type]
    assert response.status_code in (200, 404)
    if response.status_code == 200:
        assert _json(response)["degraded"] is True
    assert emulator.request_count() == 0
    assert "ntaid" not in response.cookies


@pytest.mark.parametrize("common_middleware", [True, False])
def test_a_request_for_a_host_the_site_does_not_serve_is_left_to_django(
    client: Client,
    emulator: EmulatorHandle,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    common_middleware: bool,
) -> None:
    # Without CommonMiddleware (which answers 400 first), the page event read the host: two
    # errors with their tracebacks logged for every request of a scanner, a baseline page.
    settings.ALLOWED_HOSTS = ["testserver"]
    if not common_middleware:
        settings.MIDDLEWARE = [
            m for m in settings.MIDDLEWARE if not m.endswith("CommonMiddleware")
        ]
    response = client.get("/mw/page/", HTTP_HOST="scanner.example")
    assert response.status_code == (400 if common_middleware else 200)
    if response.status_code == 200:
        assert _json(response)["degraded"] is True
    assert emulator.request_count() == 0 and "ntaid" not in response.cookies
    assert not [r for r in caplog.records if r.name.startswith("django_experience")]
    assert client.get("/mw/page/").status_code == 200 and emulator.request_count() == 1


def _costs_nothing(response: Any, emulator: EmulatorHandle) -> None:
    assert response.status_code in (200, 302, 404)
    assert emulator.request_count() == 0  # not even a queued page view
    assert "ntaid" not in response.cookies


def test_the_admin_is_excluded_by_default(client: Client, emulator: EmulatorHandle) -> None:
    _costs_nothing(client.get("/admin/login/"), emulator)
    _costs_nothing(client.get("/admin/django_experience/profilemapping/"), emulator)
    assert "ntaid" in client.get("/mw/page/").cookies  # the rest of the site is personalized


def test_extra_exclusions_keep_the_defaults_and_the_admin(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS_EXTRA = [r"^/mw/excluded/"]
    _costs_nothing(client.get("/mw/excluded/page/"), emulator)
    _costs_nothing(client.get("/admin/login/"), emulator)
    _costs_nothing(client.get("/favicon.ico"), emulator)
    assert "ntaid" in client.get("/mw/page/").cookies


@pytest.mark.parametrize(
    "patterns",
    [
        [r"(?i)^/MW/EXCLUDED/"],  # a global flag: valid alone, not inside the joined regex
        [r"^/static/", r"(?i)^/mw/EXCLUDED/"],
        [r"^/(?P<part>static)/", r"^/mw/(?P<part>excluded)/"],  # one group name twice
    ],
)
@pytest.mark.filterwarnings("error::DeprecationWarning")  # Python 3.10 joins (?i) with a warning
def test_patterns_valid_alone_but_not_joined_still_exclude(
    client: Client, emulator: EmulatorHandle, settings: Any, patterns: list[str]
) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS_EXTRA = patterns
    _costs_nothing(client.get("/mw/excluded/page/"), emulator)
    _costs_nothing(client.get("/admin/login/"), emulator)
    assert "ntaid" in client.get("/mw/page/").cookies


def test_a_global_flag_applies_to_its_own_pattern_only() -> None:
    # Joined into one regex (as Python 3.10 allows, with a warning), (?i) would make every
    # pattern ignore case.
    exclusions = _compile_exclusions((r"^/mw/excluded/", r"(?i)^/NOWHERE/"))
    assert exclusions is not None
    assert exclusions.search("/mw/excluded/") and exclusions.search("/nowhere/")
    assert not exclusions.search("/MW/EXCLUDED/")


def test_extra_exclusions_add_to_a_configured_list(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS = [r"^/static/"]
    settings.EXPERIENCE_EXCLUDE_PATHS_EXTRA = [r"^/mw/excluded/"]
    _costs_nothing(client.get("/mw/excluded/page/"), emulator)
    _costs_nothing(client.get("/static/app.css"), emulator)
    assert "ntaid" in client.get("/mw/page/").cookies


def test_a_moved_admin_is_excluded_wherever_it_is_mounted(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.ROOT_URLCONF = "tests.middleware.urls_moved_admin"
    _costs_nothing(client.get("/backoffice/login/"), emulator)
    _costs_nothing(client.get("/backoffice/auth/user/"), emulator)
    _costs_nothing(client.get("/staff-area/login/"), emulator)  # another AdminSite
    # /admin/ is nothing special on this site: a page there would be personalized.
    assert classify(RequestFactory().get("/admin/help/")) == PERSONALIZED
    assert "ntaid" in client.get("/mw/page/").cookies


def test_an_admin_under_i18n_patterns_is_excluded_in_every_language(settings: Any) -> None:
    settings.ROOT_URLCONF = "tests.middleware.urls_i18n_admin"
    settings.LANGUAGES = [("en", "English"), ("de", "German")]
    factory = RequestFactory()
    assert classify(factory.get("/de/admin/login/")) == EXCLUDED
    assert classify(factory.get("/en/admin/")) == EXCLUDED
    assert classify(factory.get("/admin/")) == PERSONALIZED
    assert classify(factory.get("/mw/page/")) == PERSONALIZED


def test_a_urlconf_chosen_per_request_finds_its_own_admin() -> None:
    request = RequestFactory().get("/backoffice/")
    assert classify(request) == PERSONALIZED  # the root URLconf mounts the admin at /admin/
    request.urlconf = "tests.middleware.urls_moved_admin"
    assert classify(request) == EXCLUDED


def test_the_admin_is_found_once_per_urlconf_not_per_request(
    client: Client, emulator: EmulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_experience import middleware

    calls: list[object] = []
    original = middleware.admin_paths

    def counting(urlconf: Any = None) -> Any:
        calls.append(urlconf)
        return original(urlconf)

    monkeypatch.setattr(middleware, "admin_paths", counting)
    conf_reload()
    for _ in range(3):
        _costs_nothing(client.get("/admin/login/"), emulator)
    client.get("/mw/plain/")
    assert calls == [None]


def test_media_url_is_excluded_by_default(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.MEDIA_URL = "/uploads/"
    _costs_nothing(client.get("/uploads/avatars/ada.png"), emulator)
    settings.MEDIA_URL = "https://cdn.example.com/media/"  # another host: no path of ours
    assert classify(RequestFactory().get("/media/x.png")) == PERSONALIZED


def test_setting_the_exclusions_replaces_every_default(settings: Any) -> None:
    settings.EXPERIENCE_EXCLUDE_PATHS = [r"^/private/"]
    factory = RequestFactory()
    assert classify(factory.get("/private/x")) == EXCLUDED
    assert classify(factory.get("/admin/")) == PERSONALIZED
    assert classify(factory.get("/static/app.css")) == PERSONALIZED


def test_head_requests_are_personalized_like_get(
    client: Client, emulator: EmulatorHandle
) -> None:
    response = client.head("/mw/page/")
    assert response.status_code == 200 and response.content == b""
    assert response.cookies["ntaid"].value
    # Asked as preflight does (a HEAD is no page view): nothing stored for the new id yet.
    assert emulator.stats()["requests"] == {"update": {"200": 1}}
    assert emulator.profile(response.cookies["ntaid"].value) is None
    assert response["Cache-Control"] == "private"
    before = emulator.request_count()
    for path in ("/static/app.css", "/admin/login/"):
        excluded = client.head(path)
        assert emulator.request_count() == before and "ntaid" not in excluded.cookies


def test_post_requests_are_not_personalized_but_track(
    client: Client, emulator: EmulatorHandle
) -> None:
    response = client.post("/mw/track/")
    assert response.status_code == 200
    assert emulator.stats()["requests"] == {"batch": {"200": 1}}
    profile_id = response.cookies["ntaid"].value
    stored = emulator.profile(profile_id)
    assert stored is not None
    assert [(e["type"], e.get("event")) for e in stored["events"]] == [("track", "Added to cart")]


def test_track_on_a_known_visitor_uses_the_cookie_profile(
    client: Client, emulator: EmulatorHandle
) -> None:
    profile_id = _json(client.get("/mw/page/"))["profile"]
    response = client.post("/mw/track/")
    assert "ntaid" not in response.cookies
    stored = emulator.profile(profile_id)
    assert stored is not None and stored["events"][-1]["event"] == "Added to cart"


def test_cache_headers_only_when_personalization_was_used(
    client: Client, emulator: EmulatorHandle
) -> None:
    response = client.get("/mw/cached/")
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert "private" in cache_control and "max-age=60" in cache_control
    assert "public" not in cache_control
    vary = {part.strip() for part in response["Vary"].split(",")}
    assert vary == {"Accept-Language", "Cookie"}
    plain = client.get("/mw/plain/")  # the visitor has a cookie already: nothing to keep private
    assert not plain.has_header("Cache-Control")
    first_visit = Client().get("/mw/plain/")  # sets a fresh id: never for a shared cache
    assert "ntaid" in first_visit.cookies and first_visit["Cache-Control"] == "private"
    assert "Cookie" in first_visit["Vary"]


def test_locale_from_i18n(client: Client, emulator: EmulatorHandle, settings: Any) -> None:
    settings.USE_I18N = True
    settings.LANGUAGES = [("en-us", "English"), ("de", "German")]
    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE[:1],
        "django.middleware.locale.LocaleMiddleware",
        *settings.MIDDLEWARE[1:],
    ]
    profile_id = _json(client.get("/mw/page/", HTTP_ACCEPT_LANGUAGE="de"))["profile"]
    stored = emulator.profile(profile_id)
    assert stored is not None and stored["events"][0]["context"]["locale"] == "de"


def test_profile_of_another_environment_recovers_in_the_same_request(
    client: Client, emulator: EmulatorHandle
) -> None:
    from django_experience.api.events import page_event

    staging = emulator.client(environment="staging").create_profile([page_event("https://x/")])
    client.cookies["ntaid"] = staging.profile.id
    response = client.get("/mw/page/")
    data = _json(response)
    assert data["degraded"] is False and data["profile"] != staging.profile.id
    assert response.cookies["ntaid"].value == data["profile"]
    assert emulator.stats()["requests"]["update"] == {"404": 1}


def test_secure_cookie_forced_on(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_COOKIE_SECURE = True
    assert client.get("/mw/page/").cookies["ntaid"]["secure"]
    settings.EXPERIENCE_COOKIE_SECURE = False
    assert not Client().get("/mw/page/", secure=True).cookies["ntaid"]["secure"]


def test_misconfiguration_serves_baseline_with_one_log_line(
    client: Client, emulator: EmulatorHandle, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EXPERIENCE_ORGANIZATION_ID = ""
    response = client.get("/mw/page/")
    assert response.status_code == 200 and response.json()["degraded"] is True
    lines = [r for r in caplog.records if r.name == "django_experience" and r.levelno >= 30]
    assert len(lines) == 1 and lines[0].exc_info is None


def test_a_head_request_is_personalized_but_no_page_view(
    client: Client, emulator: EmulatorHandle
) -> None:
    # Monitors and link checkers send HEAD: the answer's headers match the GET's, nothing is
    # stored (as in preflight mode), and a later GET is the profile's first page view.
    profile_id = _json(client.get("/mw/page/"))["profile"]
    stored = emulator.profile(profile_id)
    assert stored is not None and len(stored["events"]) == 1
    for path in ("/mw/page/", "/mw/plain/"):  # read or not, no page event is left to send
        response = client.head(path)
        assert response.status_code == 200 and response.content == b""
    delivery.flush(5)
    stored = emulator.profile(profile_id)
    assert stored is not None and [e["type"] for e in stored["events"]] == ["page"]
