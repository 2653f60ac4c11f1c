"""Consent, CDN location headers and the client IP."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

from django_experience.api.events import page_event
from django_experience.emulator.handle import EmulatorHandle
from django_experience.location import client_ip, geo_location
from django_experience.models import ProfileMapping
from tests.stub_server import RecordedRequest, StubResponse, StubServer, ok_envelope

pytestmark = pytest.mark.django_db


def _profile_answer(request: RecordedRequest) -> StubResponse:
    profile_id = request.path.rsplit("/", 1)[-1]
    if profile_id == "profiles":
        profile_id = "new-profile"
    return ok_envelope(
        {
            "profile": {"id": profile_id, "stableId": profile_id, "audiences": [], "traits": {}},
            "experiences": [],
            "changes": [],
        }
    )


@pytest.fixture
def api(stub: StubServer, settings: Any) -> StubServer:
    stub.responder = _profile_answer
    settings.EXPERIENCE_API_URL = stub.url
    return stub


# -- consent ------------------------------------------------------------------------------


def test_without_consent_only_page_events_and_no_cookie(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_CONSENT = "tests.middleware.views.no_consent"
    settings.EXPERIENCE_FEATURES = ["location", "ip-enrichment"]
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    # The visitor's profile from before they withdrew consent exists in the API.
    emulator.client().upsert_profiles(
        [{**page_event("https://example.com/earlier"), "anonymousId": "previous-profile"}]
    )
    client.cookies["ntaid"] = "previous-profile"
    client.cookies["ctfl-opt-aid"] = "previous-profile"
    response = client.get("/mw/page/", HTTP_CF_IPCOUNTRY="DE")
    assert response.status_code == 200
    # The stored id is neither used nor kept: the page event went to a new, throw-away profile
    # and nothing reached the previous one.
    requests = emulator.stats()["requests"]
    assert requests["create"] == {"200": 1} and "update" not in requests and "get" not in requests
    previous = emulator.profile("previous-profile")
    assert previous is not None and len(previous["events"]) == 1
    (other,) = [p for p in emulator.profiles() if p["id"] != "previous-profile"]
    assert [e["type"] for e in other["events"]] == ["page"]
    assert response.json()["profile"] == other["id"]
    for name in ("ntaid", "ctfl-opt-aid"):
        assert response.cookies[name].value == "" and response.cookies[name]["max-age"] == 0
    # track and identify send nothing; the sign-in maps nothing.
    client.post("/mw/track/")
    client.post(
        "/mw/identify/", {"user_id": "crm-1", "traits": {"a": 1}}, content_type="application/json"
    )
    User.objects.create_user("ada", password="pw")
    assert client.post("/mw/sign-in/", {"username": "ada"}).status_code == 200
    assert not ProfileMapping.objects.exists()
    events = [e for p in emulator.profiles() for e in p["events"]]
    assert events and {e["type"] for e in events} == {"page"}
    assert all(not p["traits"] for p in emulator.profiles())
    assert all(not p.get("location") for p in emulator.profiles())


def test_without_consent_deleting_only_the_sdk_cookie_is_private(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_CONSENT = "tests.middleware.views.no_consent"
    client.cookies["ctfl-opt-aid"] = "previous-profile"
    response = client.get("/mw/plain/")
    assert response.cookies["ctfl-opt-aid"]["max-age"] == 0
    assert "private" in response["Cache-Control"] and "Cookie" in response["Vary"]


def test_without_consent_no_features_location_or_ip(
    client: Client, api: StubServer, settings: Any
) -> None:
    settings.EXPERIENCE_CONSENT = "tests.middleware.views.no_consent"
    settings.EXPERIENCE_FEATURES = ["location"]
    client.get("/mw/page/", HTTP_CF_IPCOUNTRY="DE", REMOTE_ADDR="8.8.4.4")
    (request,) = api.requests
    assert "options" not in request.json() or not request.json()["options"]
    assert request.header("X-Force-IP") is None


def test_consent_given_later_allows_the_cookie(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_CONSENT = "tests.middleware.views.consent_from_cookie"
    assert "ntaid" not in client.get("/mw/page/").cookies
    client.cookies["consent"] = "yes"
    response = client.get("/mw/page/")
    assert response.cookies["ntaid"].value == response.json()["profile"]


def test_a_failing_consent_callable_means_no_consent(
    client: Client, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_CONSENT = lambda request: 1 / 0
    response = client.get("/mw/page/")
    assert response.status_code == 200 and "ntaid" not in response.cookies


# -- location and IP ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (
            {
                "HTTP_CF_IPCOUNTRY": "de",
                "HTTP_CF_IPCITY": "Berlin",
                "HTTP_CF_REGION": "Berlin",
                "HTTP_CF_IPCONTINENT": "EU",
                "HTTP_CF_IPLATITUDE": "52.52",
                "HTTP_CF_IPLONGITUDE": "13.40",
                "HTTP_CF_TIMEZONE": "Europe/Berlin",
            },
            {
                "countryCode": "DE",
                "city": "Berlin",
                "region": "Berlin",
                "continent": "EU",
                "timezone": "Europe/Berlin",
                "coordinates": {"latitude": 52.52, "longitude": 13.40},
            },
        ),
        (
            {
                "HTTP_CLOUDFRONT_VIEWER_COUNTRY": "FR",
                "HTTP_CLOUDFRONT_VIEWER_COUNTRY_NAME": "France",
                "HTTP_CLOUDFRONT_VIEWER_CITY": "Paris",
                "HTTP_CLOUDFRONT_VIEWER_COUNTRY_REGION": "IDF",
            },
            {"countryCode": "FR", "country": "France", "city": "Paris", "regionCode": "IDF"},
        ),
        (
            {
                "HTTP_X_VERCEL_IP_COUNTRY": "US",
                "HTTP_X_VERCEL_IP_CITY": "San%20Francisco",
                "HTTP_X_VERCEL_IP_COUNTRY_REGION": "CA",
            },
            {"countryCode": "US", "city": "San Francisco", "regionCode": "CA"},
        ),
        (
            {"HTTP_FASTLY_GEO_COUNTRY_CODE": "JP", "HTTP_FASTLY_GEO_CITY": "Tokyo"},
            {"countryCode": "JP", "city": "Tokyo"},
        ),
        ({"HTTP_X_GEO_COUNTRY": "BR"}, {"countryCode": "BR"}),
        # coordinates no place has are dropped, the rest kept (NaN would make the body not JSON)
        (
            {"HTTP_X_GEO_COUNTRY": "BR", "HTTP_X_GEO_LATITUDE": "nan", "HTTP_X_GEO_LONGITUDE": "1"},
            {"countryCode": "BR"},
        ),
        (
            {"HTTP_X_GEO_COUNTRY": "BR", "HTTP_X_GEO_LATITUDE": "1", "HTTP_X_GEO_LONGITUDE": "inf"},
            {"countryCode": "BR"},
        ),
        (
            {"HTTP_X_GEO_COUNTRY": "BR", "HTTP_X_GEO_LATITUDE": "91", "HTTP_X_GEO_LONGITUDE": "0"},
            {"countryCode": "BR"},
        ),
        (
            {
                "HTTP_X_GEO_COUNTRY": "BR",
                "HTTP_X_GEO_LATITUDE": "0",
                "HTTP_X_GEO_LONGITUDE": "-181",
            },
            {"countryCode": "BR"},
        ),
        (
            {
                "HTTP_X_GEO_COUNTRY": "BR",
                "HTTP_X_GEO_LATITUDE": "-90",
                "HTTP_X_GEO_LONGITUDE": "180",
            },
            {"countryCode": "BR", "coordinates": {"latitude": -90.0, "longitude": 180.0}},
        ),
        ({"HTTP_CF_IPCOUNTRY": "XX"}, None),
        ({"HTTP_CF_IPCOUNTRY": "Germany!"}, None),
        ({}, None),
    ],
)
def test_geo_headers(headers: dict[str, str], expected: dict[str, Any] | None) -> None:
    request = RequestFactory().get("/", **headers)  # type: ignore[arg-type]
    assert geo_location(request.META) == expected


def test_location_and_features_reach_the_api(
    client: Client, api: StubServer, settings: Any
) -> None:
    settings.EXPERIENCE_FEATURES = ["location"]
    client.get("/mw/page/", HTTP_CF_IPCOUNTRY="DE", REMOTE_ADDR="8.8.4.4")
    (request,) = api.requests
    body = request.json()
    assert body["options"]["location"] == {"countryCode": "DE"}
    assert body["options"]["features"] == ["location"]
    assert request.header("X-Force-IP") == "8.8.4.4"


def test_a_visitor_sending_nan_coordinates_is_still_personalized(
    client: Client, api: StubServer, settings: Any
) -> None:
    # Geo headers reach us from whoever sends them; a NaN must not cost the page its answer.
    response = client.get(
        "/mw/page/", HTTP_CF_IPCOUNTRY="DE", HTTP_CF_IPLATITUDE="nan", HTTP_CF_IPLONGITUDE="nan"
    )
    assert response.json()["degraded"] is False
    (request,) = api.requests
    assert request.json()["options"]["location"] == {"countryCode": "DE"}


def test_no_ip_without_the_location_feature(client: Client, api: StubServer, settings: Any) -> None:
    client.get("/mw/page/", REMOTE_ADDR="8.8.4.4")
    assert api.requests[0].header("X-Force-IP") is None


def test_location_is_stored_on_the_profile(client: Client, emulator: EmulatorHandle) -> None:
    response = client.get("/mw/page/", HTTP_X_VERCEL_IP_COUNTRY="NL", HTTP_X_VERCEL_IP_CITY="Delft")
    stored = emulator.profile(response.json()["profile"])
    assert stored is not None and stored["location"]["city"] == "Delft"


@pytest.mark.parametrize(
    ("header", "meta", "expected"),
    [
        (None, {"REMOTE_ADDR": "198.51.100.7"}, None),  # documentation range: not global
        (None, {"REMOTE_ADDR": "8.8.8.8"}, "8.8.8.8"),
        (None, {"REMOTE_ADDR": "127.0.0.1"}, None),
        (None, {"REMOTE_ADDR": "10.1.2.3"}, None),
        (None, {"REMOTE_ADDR": "not an ip"}, None),
        (None, {"REMOTE_ADDR": "8.8.8.8", "HTTP_X_FORWARDED_FOR": "1.1.1.1"}, "8.8.8.8"),
        (
            "HTTP_X_FORWARDED_FOR",
            {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_FORWARDED_FOR": "6.6.6.6, 1.1.1.1"},
            "1.1.1.1",
        ),
        (
            "HTTP_X_REAL_IP",
            {"REMOTE_ADDR": "10.0.0.1", "HTTP_X_REAL_IP": "2606:4700::1"},
            "2606:4700::1",
        ),
        ("HTTP_X_REAL_IP", {"REMOTE_ADDR": "8.8.8.8"}, None),
        # CloudFront-Viewer-Address and some proxies add the client's port.
        (
            "HTTP_CLOUDFRONT_VIEWER_ADDRESS",
            {"HTTP_CLOUDFRONT_VIEWER_ADDRESS": "1.1.1.1:46532"},
            "1.1.1.1",
        ),
        (
            "HTTP_CLOUDFRONT_VIEWER_ADDRESS",
            {"HTTP_CLOUDFRONT_VIEWER_ADDRESS": "[2606:4700::1]:443"},
            "2606:4700::1",
        ),
        ("HTTP_X_REAL_IP", {"HTTP_X_REAL_IP": "[2606:4700::1"}, None),
        ("HTTP_X_REAL_IP", {"HTTP_X_REAL_IP": "10.0.0.1:80"}, None),
    ],
)
def test_client_ip(
    settings: Any, header: str | None, meta: dict[str, str], expected: str | None
) -> None:
    settings.EXPERIENCE_TRUSTED_IP_HEADER = header
    request = RequestFactory().get("/")
    request.META.update(meta)
    assert client_ip(request) == expected
