"""Identify fan-out: sign-in and ``request.experience.identify`` reach Experiture and Releva
through background delivery, consent permitting."""

from __future__ import annotations

import datetime as dt
import importlib
import logging
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience import delivery
from django_experience.destinations.fanout import REPEAT_WINDOW, recent, upsert_to_destinations
from django_experience.emulator import destinations as emulated
from django_experience.emulator.handle import EmulatorHandle
from tests.stub_server import RecordedRequest, StubResponse, StubServer

pytestmark = pytest.mark.django_db

failures: list[tuple[BaseException, list[dict[str, Any]], str]] = []


def record_failure(exc: BaseException, payloads: list[dict[str, Any]], sink: str) -> None:
    """EXPERIENCE_DELIVERY_ON_ERROR of these tests."""
    failures.append((exc, payloads, sink))


ADA_EXPERITURE = {"email": "ada@example.com", "firstname": "Ada", "tier": "gold"}
ADA_RELEVA = {
    "email": "ada@example.com",
    "firstName": "Ada",
    "custom": {"string": [{"key": "tier", "values": ["gold"]}]},
    "subscribedAtChanged": False,
}


@pytest.fixture(autouse=True)
def fresh_delivery() -> Iterator[None]:
    delivery.reset()
    failures.clear()
    yield
    delivery.reset()


@pytest.fixture
def site(experience_emulator: EmulatorHandle, settings: SettingsWrapper) -> EmulatorHandle:
    """The emulator serving the Experience API and both destinations, which the settings name."""
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    settings.EXPERIENCE_USER_ID = "tests.middleware.views.user_id"
    settings.EXPERIENCE_DELIVERY_ON_ERROR = "tests.destinations.test_fanout.record_failure"
    settings.EXPERIENCE_DELIVERY_BACKOFF = 0.01
    settings.EXPERIENCE_DELIVERY_BACKOFF_MAX = 0.05
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.05
    settings.EXPERIENCE_DESTINATIONS = {
        "experiture": {"url": experience_emulator.url + "/experiture/public/v1",
                       "token": "exp-token", "match_key": "email"},
        "releva": {"url": experience_emulator.url + "/releva/api/v0", "secret_key": "rel-key"},
    }
    return experience_emulator


@pytest.fixture
def ada() -> User:
    return User.objects.create_user(
        "ada", email="ada@example.com", password="pw", first_name="Ada", is_staff=True
    )


def _sign_in(client: Client, username: str = "ada") -> None:
    assert client.get("/mw/page/").status_code == 200
    assert client.post("/mw/sign-in/", {"username": username}).status_code == 200


def test_sign_in_upserts_the_traits_to_both_destinations(
    client: Client, site: EmulatorHandle, ada: User
) -> None:
    _sign_in(client)
    assert site.destinations() == {"experiture": [ADA_EXPERITURE], "releva": [ADA_RELEVA]}
    assert failures == []


def test_explicit_identify_of_someone_who_is_not_a_user(
    client: Client, site: EmulatorHandle
) -> None:
    response = client.post(
        "/mw/identify/",
        {"user_id": "crm-77", "traits": {"email": "grace@example.com", "lastName": "Hopper"}},
        content_type="application/json",
    )
    assert response.status_code == 200
    assert site.destinations() == {
        "experiture": [{"email": "grace@example.com", "lastName": "Hopper"}],
        "releva": [{"email": "grace@example.com", "lastName": "Hopper",
                    "subscribedAtChanged": False}],
    }


def test_with_the_thread_backend_flush_sends_the_upserts(
    client: Client, site: EmulatorHandle, ada: User, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY = "thread"
    _sign_in(client)
    assert delivery.flush(timeout=10)
    assert site.destinations() == {"experiture": [ADA_EXPERITURE], "releva": [ADA_RELEVA]}
    assert failures == []


def test_no_consent_sends_nothing_to_the_destinations(
    client: Client, site: EmulatorHandle, ada: User, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_CONSENT = "tests.middleware.views.no_consent"
    _sign_in(client)
    client.post("/mw/identify/", {"user_id": "crm-1", "traits": {"email": "x@example.com"}},
                content_type="application/json")
    assert site.destinations() == {"experiture": [], "releva": []}


def test_without_configured_destinations_nothing_is_queued(
    client: Client, site: EmulatorHandle, ada: User, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DESTINATIONS = {}
    settings.EXPERIENCE_DELIVERY = "thread"
    before = delivery.counters()["queued"]
    upsert_to_destinations("user-1", {"email": "a@example.com"})
    assert delivery.counters()["queued"] == before
    assert site.destinations() == {"experiture": [], "releva": []}


def test_the_destinations_get_the_upsert_when_the_experience_api_is_down(
    client: Client, site: EmulatorHandle, ada: User
) -> None:
    site.faults(error_rate=1.0, error_status=500)
    _sign_in(client)
    assert site.destinations() == {"experiture": [ADA_EXPERITURE], "releva": [ADA_RELEVA]}


def test_rate_limits_and_outages_are_retried(
    client: Client, site: EmulatorHandle, ada: User, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY = "thread"
    emulated.inject_errors("experiture", status=503, times=2)
    emulated.inject_errors("releva", status=429, times=1, retry_after="0")
    _sign_in(client)
    assert delivery.flush(timeout=10)
    assert site.destinations() == {"experiture": [ADA_EXPERITURE], "releva": [ADA_RELEVA]}
    assert delivery.counters()["retried"] >= 3
    assert failures == []


def test_a_refusal_is_reported_once_and_not_retried(
    client: Client, site: EmulatorHandle, ada: User, settings: SettingsWrapper
) -> None:
    settings.EXPERIENCE_DELIVERY = "thread"
    emulated.configure(experiture_token="another-token")
    _sign_in(client)
    assert delivery.flush(timeout=10)
    [(error, payloads, sink)] = failures
    assert sink == "experiture" and getattr(error, "status", None) == 401
    assert payloads == [{"userId": f"user-{ada.pk}", "traits": ADA_EXPERITURE}]
    assert delivery.counters()["retried"] == 0
    assert site.destinations() == {"experiture": [], "releva": [ADA_RELEVA]}


def test_a_record_refused_locally_is_reported_and_never_sent(
    site: EmulatorHandle, settings: SettingsWrapper, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EXPERIENCE_DELIVERY = "thread"
    caplog.set_level(logging.INFO, "django_experience")
    for traits in (
        {"email": "a@example.com", "seen": "2026-04-20T12:00:00"},  # naive: Experiture refuses
        {"email": "b@example.com", "seen": "2026-04-20T12:00:00Z"},
        {"firstname": "No Email"},  # no match key, no email: both refuse
    ):
        upsert_to_destinations("someone", traits)
    assert delivery.flush(timeout=10)
    stored = site.destinations()
    assert stored["experiture"] == [{"email": "b@example.com", "seen": "2026-04-20T12:00:00Z"}]
    assert [profile["email"] for profile in stored["releva"]] == [
        "a@example.com", "b@example.com"
    ]
    reported = sorted((sink, payloads[0]["traits"].get("email", "-")) for _, payloads, sink
                      in failures)
    assert reported == [("experiture", "-"), ("experiture", "a@example.com"), ("releva", "-")]
    assert all(getattr(error, "local", False) for error, _, _ in failures)
    naive = next(error for error, payloads, sink in failures
                 if payloads[0]["traits"].get("email") == "a@example.com")
    assert "no time zone" in getattr(naive, "reason", "")  # the details, for the callback
    assert "field 'seen'" in caplog.text
    assert "2026-04-20T12:00:00" not in caplog.text and "a@example.com" not in caplog.text
    assert delivery.counters()["retried"] == 0
    assert delivery.counters()["failed"] == 3


def test_an_upsert_accepted_before_an_outage_is_not_sent_again(
    stub: StubServer, settings: SettingsWrapper
) -> None:
    """Three upserts in one round: the second meets a 503, so the second and third are
    retried; the first is not sent twice."""
    answers = iter([200, 503])

    def experiture(request: RecordedRequest) -> StubResponse:
        status = next(answers, 200)
        if status != 200:
            return StubResponse(status, {"success": False, "error": {"message": "down"}})
        return StubResponse(200, {"success": True, "data": {"accepted": True}})

    stub.responder = experiture
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_BACKOFF = 0.01
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.2
    settings.EXPERIENCE_DELIVERY_ON_ERROR = "tests.destinations.test_fanout.record_failure"
    settings.EXPERIENCE_DESTINATIONS = {"experiture": {"url": stub.url, "token": "t"}}
    for n in range(3):
        upsert_to_destinations(f"user-{n}", {"email": f"p{n}@example.com"})
    assert delivery.flush(timeout=10)
    sent = [request.json()["record"]["email"] for request in stub.requests]
    assert sent == ["p0@example.com", "p1@example.com", "p1@example.com", "p2@example.com"]
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (3, 0, 2)
    assert failures == []


def test_one_profile_refused_by_releva_does_not_drop_the_others_of_its_request(
    stub: StubServer, settings: SettingsWrapper
) -> None:
    """Delivery puts five people's upserts in one Releva request, which Releva refuses as a
    whole for one bad profile: the request is split until that profile is alone, the other
    four are stored, and only the bad one is reported, with Releva's reason for it."""
    stored: list[str] = []

    def releva(request: RecordedRequest) -> StubResponse:
        emails = [entry["profile"]["email"] for entry in request.json()["profiles"]]
        if "bob@example.com" in emails:
            where = emails.index("bob@example.com")
            return StubResponse(400, {"message": f"profiles[{where}].profile: registeredAt "
                                                 "must be an ISO-8601 date and time"})
        stored.extend(emails)
        return StubResponse(202, {})

    stub.responder = releva
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.2
    settings.EXPERIENCE_DELIVERY_ON_ERROR = "tests.destinations.test_fanout.record_failure"
    settings.EXPERIENCE_DESTINATIONS = {"releva": {"url": stub.url, "secret_key": "k"}}
    people = ["ada", "bob", "cy", "dee", "eve"]
    for name in people:
        upsert_to_destinations(f"user-{name}", {"email": f"{name}@example.com"})
    assert delivery.flush(timeout=10)
    assert len(stub.requests[0].json()["profiles"]) == 5  # one request for all of them
    assert sorted(stored) == [f"{name}@example.com" for name in people if name != "bob"]
    [(error, payloads, sink)] = failures
    assert sink == "releva" and getattr(error, "status", None) == 400
    assert payloads == [{"userId": "user-bob", "traits": {"email": "bob@example.com"}}]
    assert "profiles[0].profile: registeredAt" in str(error)  # its own request's answer
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (4, 1, 0)


def test_a_releva_request_refused_for_its_key_is_not_split(
    stub: StubServer, settings: SettingsWrapper
) -> None:
    """A wrong secret key concerns every profile: one request, one report for all of them."""
    stub.responder = lambda request: StubResponse(401, {"message": "Unauthorized"})
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.2
    settings.EXPERIENCE_DELIVERY_ON_ERROR = "tests.destinations.test_fanout.record_failure"
    settings.EXPERIENCE_DESTINATIONS = {"releva": {"url": stub.url, "secret_key": "wrong"}}
    for name in ("ada", "bob", "cy"):
        upsert_to_destinations(f"user-{name}", {"email": f"{name}@example.com"})
    assert delivery.flush(timeout=10)
    assert len(stub.requests) == 1
    [(error, payloads, sink)] = failures
    assert sink == "releva" and getattr(error, "status", None) == 401
    assert [payload["userId"] for payload in payloads] == ["user-ada", "user-bob", "user-cy"]


def test_a_date_time_in_another_iso_spelling_reaches_releva_in_the_documents_form(
    site: EmulatorHandle, settings: SettingsWrapper
) -> None:
    """A lower-case "z" (valid ISO 8601, accepted by the client) is one the platform need not
    take: it is sent as "Z", so all three upserts of the round are stored."""
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.2
    settings.EXPERIENCE_DESTINATIONS = {"releva": settings.EXPERIENCE_DESTINATIONS["releva"]}
    upsert_to_destinations("u1", {"email": "ada@example.com", "first_name": "Ada"})
    upsert_to_destinations(
        "u2", {"email": "bob@example.com", "registeredAt": "2019-08-18T05:48:42z"}
    )
    upsert_to_destinations("u3", {"email": "cy@example.com", "first_name": "Cy"})
    assert delivery.flush(timeout=10)
    stored = site.destinations()["releva"]
    assert [profile["email"] for profile in stored] == [
        "ada@example.com", "bob@example.com", "cy@example.com"
    ]
    assert stored[1]["registeredAt"] == "2019-08-18T05:48:42Z"
    assert failures == []


def test_an_experiture_record_refused_is_reported_alone_and_not_sent_again(
    stub: StubServer, settings: SettingsWrapper
) -> None:
    """Experiture takes one record per request: its refusal is about that record, so the
    round is not split and nothing is sent twice."""

    def experiture(request: RecordedRequest) -> StubResponse:
        if request.json()["record"]["email"] == "bob@example.com":
            return StubResponse(400, {"success": False, "error": {
                "code": "CDP_ETL.VALIDATION.REQUEST_INVALID", "message": "tier is not valid"}})
        return StubResponse(200, {"success": True, "data": {"accepted": True}})

    stub.responder = experiture
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.2
    settings.EXPERIENCE_DELIVERY_ON_ERROR = "tests.destinations.test_fanout.record_failure"
    settings.EXPERIENCE_DESTINATIONS = {"experiture": {"url": stub.url, "token": "t"}}
    for name in ("ada", "bob", "cy"):
        upsert_to_destinations(f"user-{name}", {"email": f"{name}@example.com"})
    assert delivery.flush(timeout=10)
    assert [request.json()["record"]["email"] for request in stub.requests] == [
        "ada@example.com", "bob@example.com", "cy@example.com"
    ]
    [(error, payloads, sink)] = failures
    assert sink == "experiture" and getattr(error, "status", None) == 400
    assert payloads == [{"userId": "user-bob", "traits": {"email": "bob@example.com"}}]
    counts = delivery.counters()
    assert (counts["sent"], counts["failed"], counts["retried"]) == (2, 1, 0)


def test_the_sign_in_response_does_not_wait_for_the_destinations(
    client: Client,
    stub: StubServer,
    experience_emulator: EmulatorHandle,
    ada: User,
    settings: SettingsWrapper,
) -> None:
    """The destination holds every answer until the sign-in response is back: with the
    upsert in the request, the answers would come first."""
    responded = threading.Event()
    answered_after_response: list[bool] = []

    def slow(request: RecordedRequest) -> StubResponse:
        responded.wait(5)
        answered_after_response.append(responded.is_set())
        if request.path.endswith("/profiles/upsert"):
            return StubResponse(200, {"success": True, "data": {"accepted": True}})
        return StubResponse(202, {})

    stub.responder = slow
    settings.EXPERIENCE_DELIVERY = "thread"
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 0.0
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    settings.EXPERIENCE_DESTINATIONS = {
        "experiture": {"url": stub.url + "/experiture", "token": "t", "match_key": "email"},
        "releva": {"url": stub.url + "/releva", "secret_key": "k"},
    }
    _sign_in(client)
    responded.set()
    assert delivery.flush(timeout=10)
    assert sorted(request.path for request in stub.requests) == [
        "/experiture/profiles/upsert", "/releva/profiles"
    ]
    assert answered_after_response == [True, True]


def test_the_tasks_backend_runs_the_upserts_as_tasks(
    site: EmulatorHandle, settings: SettingsWrapper
) -> None:
    """Jobs are JSON (a datetime trait too), so any task backend can store and run them."""
    from tests.delivery.helpers import TASKS_MODULE, tasks_module

    tasks_module()  # Django's own on Django 6, the backport before
    importlib.import_module(f"{TASKS_MODULE}.signals")  # resets task backends on TASKS changes
    settings.EXPERIENCE_DELIVERY = "tasks"
    settings.TASKS = {"default": {"BACKEND": f"{TASKS_MODULE}.backends.immediate.ImmediateBackend"}}
    joined = dt.datetime(2026, 4, 20, 12, 30, tzinfo=dt.timezone.utc)
    upsert_to_destinations("crm-9", {"email": "ida@example.com", "registeredAt": joined})
    assert delivery.flush(timeout=10)
    stored = site.destinations()
    assert stored["experiture"] == [{"email": "ida@example.com",
                                     "registeredAt": "2026-04-20T12:30:00Z"}]
    assert stored["releva"][0]["registeredAt"] == "2026-04-20T12:30:00Z"
    assert failures == []


def test_the_sync_backend_uses_the_clients_own_retries(
    client: Client, site: EmulatorHandle, ada: User
) -> None:
    emulated.inject_errors("experiture", status=429, times=1, retry_after="0")
    emulated.inject_errors("releva", status=429, times=1, retry_after="0")
    _sign_in(client)
    assert site.destinations() == {"experiture": [ADA_EXPERITURE], "releva": [ADA_RELEVA]}
    assert failures == []


def _experiture_stub(stub: StubServer, settings: SettingsWrapper) -> None:
    stub.responder = lambda request: StubResponse(200, {"success": True, "data": {}})
    settings.EXPERIENCE_DESTINATIONS = {"experiture": {"url": stub.url, "token": "t"}}


def test_an_outage_of_the_experience_api_queues_one_upsert_not_one_per_page(
    client: Client, stub: StubServer, experience_emulator: EmulatorHandle, ada: User,
    settings: SettingsWrapper,
) -> None:
    """Unidentified, the signed-in user is identified again on every page."""
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    _experiture_stub(stub, settings)
    experience_emulator.faults(error_rate=1.0, error_status=500)
    client.force_login(ada)  # no middleware saw the sign-in: identified on the first page
    for _ in range(3):
        assert client.get("/mw/page/").status_code == 200
    assert [request.json()["record"] for request in stub.requests] == [ADA_EXPERITURE]


def test_changed_traits_are_upserted_again(stub: StubServer, settings: SettingsWrapper) -> None:
    _experiture_stub(stub, settings)
    for tier in ("basic", "basic", "gold", "basic"):
        upsert_to_destinations("user-1", {"email": "a@example.com", "tier": tier})
    assert [request.json()["record"]["tier"] for request in stub.requests] == [
        "basic", "gold", "basic"
    ]
    now = time.monotonic()
    assert recent.first_time("someone", "traits", now)
    assert not recent.first_time("someone", "traits", now + REPEAT_WINDOW - 1)
    assert recent.first_time("someone", "traits", now + REPEAT_WINDOW + 1)
