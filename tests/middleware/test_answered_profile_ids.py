"""An answer whose profile id no cookie or mapping can keep is a malformed answer: baseline."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from django.test import Client

from django_experience.mappings import valid_profile_id
from django_experience.models import ProfileMapping
from tests.api.payloads import profile_result_json
from tests.stub_server import StubServer, ok_envelope

pytestmark = pytest.mark.django_db

UNUSABLE = ["x" * 65, "x" * 129, "a b", "a;b", 'a"b', "é"]


def _answering(stub: StubServer, settings: Any, profile_id: str) -> None:
    settings.EXPERIENCE_API_URL = stub.url
    settings.EXPERIENCE_DELIVERY = "sync"
    settings.EXPERIENCE_MAX_RETRIES = 0
    stub.responder = lambda request: (
        ok_envelope({"profiles": []})
        if request.path.endswith("/events")
        else ok_envelope(profile_result_json(profile_id))
    )


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "django_experience" and r.levelno >= logging.WARNING
    ]


@pytest.mark.parametrize("answered", UNUSABLE)
def test_a_page_answered_with_an_unusable_profile_id_is_baseline_without_a_cookie(
    stub: StubServer, settings: Any, caplog: pytest.LogCaptureFixture, answered: str
) -> None:
    # Kept, the id would go into the cookie quoted, be refused when it came back, and every
    # request of the visitor would make another profile.
    _answering(stub, settings, answered)
    response = Client().get("/mw/page/")
    assert response.status_code == 200
    data = response.json()
    assert data["degraded"] is True and data["hero"] == "hero-default"
    assert data["profile"] is None
    # As after any failed call: the cookie carries the id the page view is delivered under.
    assert valid_profile_id(response.cookies["ntaid"].value) is not None
    (warning,) = _warnings(caplog)
    assert "MalformedResponse" in warning and answered not in warning


@pytest.mark.parametrize("answered", ["x" * 129, "a b"])
def test_an_identify_answered_with_an_unusable_profile_id_stores_no_mapping(
    stub: StubServer, settings: Any, answered: str
) -> None:
    # A longer id than the mapping's column holds made the sign-in's request fail with a
    # database error on PostgreSQL.
    _answering(stub, settings, answered)
    response = Client().post(
        "/mw/identify/", {"user_id": "crm-1", "traits": {}}, content_type="application/json"
    )
    assert response.status_code == 200 and response.json()["degraded"] is True
    assert not ProfileMapping.objects.exists()
    cookie = response.cookies.get("ntaid")
    assert cookie is None or valid_profile_id(cookie.value) is not None


@pytest.mark.parametrize("answered", ["a" * 64, "0f8fad5b-d9cb-469f-a165-70867728950e", "A_z-9"])
def test_a_profile_id_of_the_cookies_charset_is_kept(
    stub: StubServer, settings: Any, answered: str
) -> None:
    _answering(stub, settings, answered)
    response = Client().get("/mw/page/")
    assert response.json()["degraded"] is False
    assert response.cookies["ntaid"].value == answered
