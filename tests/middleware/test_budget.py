"""EXPERIENCE_TIMEOUT is the budget of a whole request: every API call of the request shares it.

What is timed is the API part: from the first call's arrival at the stub (``received_at``) to the
test client's return. Django's work before the first call (the test client, sessions, sign-in,
SQLite) is no API time and does not count; on a loaded machine it took 0.7 s. Right code ends
at most a budget after that arrival, plus the little the response does after the last call.

Where a later call must get only what the earlier ones left, the first call answers after
``first`` seconds, a good part of the budget, and the bound is ``first + BUDGET - EPSILON``:
just below the behaviour it rules out. A later call given a fresh budget starts after the
first call's answer, so after ``first`` seconds from its arrival, and cannot give up before a
whole budget after that. The right calls end by ``BUDGET``: ``first - EPSILON`` is left for
the response's own work, and the later call still has ``BUDGET - first`` to start in (the
tests check it did).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from django_experience.models import ProfileMapping
from tests.stub_server import (
    RecordedRequest,
    StubResponse,
    StubServer,
    error_envelope,
    ok_envelope,
)

pytestmark = pytest.mark.django_db

BUDGET = 1.0
# Timer rounding: a call given a whole budget does not give up sooner than that, less this.
EPSILON = 0.05
# ``first`` where a later call must get only the rest: a fresh budget would end at 1.6 s at
# the earliest, the bound is 1.55 s, the right calls end by 1.0 s. Not more: on a loaded machine
# a 0.7 s answer has taken 0.91 s to reach the client, and the later call must still start.
FIRST = 0.6
# One call only: the response's work after the call (sessions, the cookie, the queue) on a
# loaded machine. A second call would add a whole budget; a call that ignored its budget would
# wait for the stub's 2 s and succeed.
MARGIN = 0.3
PREFIX = "/v2/organizations/test-org/environments/main/profiles"


def _answer(profile_id: str, *, delay: float = 0.0) -> StubResponse:
    response = ok_envelope(
        {
            "profile": {"id": profile_id, "stableId": profile_id, "audiences": [], "traits": {}},
            "experiences": [],
            "changes": [],
        }
    )
    response.delay = delay
    return response


def _not_found(delay: float) -> StubResponse:
    response = error_envelope(404, "ERR_PROFILE_NOT_FOUND", "Profile not found")
    response.delay = delay
    return response


def _route(table: dict[tuple[str, str], Callable[[], StubResponse]]) -> Any:
    """A responder by (method, path below the profiles prefix: "" for create, "/<id>")."""

    def respond(request: RecordedRequest) -> StubResponse:
        below = request.path[len(PREFIX) :] if request.path.startswith(PREFIX) else request.path
        return table.get((request.method, below), lambda: _answer("fresh"))()

    return respond


@pytest.fixture
def api(stub: StubServer, settings: Any) -> Iterator[StubServer]:
    settings.EXPERIENCE_API_URL = stub.url
    settings.EXPERIENCE_TIMEOUT = BUDGET
    settings.EXPERIENCE_MAX_RETRIES = 0
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    settings.EXPERIENCE_DELIVERY = "thread"  # failed page views wait in the queue, unsent
    settings.EXPERIENCE_DELIVERY_FLUSH_INTERVAL = 60
    yield stub


def _ended(call: Callable[[], Any]) -> tuple[Any, float]:
    """The response, and when the test client returned it (``time.monotonic()``)."""
    response = call()
    return response, time.monotonic()


def _api_seconds(api: StubServer, ended: float) -> float:
    """Seconds from the first API call's arrival at the stub to ``ended``: the request's API
    part, without Django's work before the first call (the budget starts a moment before it)."""
    first = min(r.received_at for r in api.requests if r.path.startswith(PREFIX))
    return ended - first


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "django_experience" and r.levelno >= logging.WARNING
    ]


def _calls(api: StubServer) -> list[tuple[str, str]]:
    return [(r.method, r.path[len(PREFIX) :]) for r in api.requests if r.path.startswith(PREFIX)]


def test_the_404_recovery_gets_only_what_the_first_call_left(
    client: Client, api: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The cookie's profile answers 404 after FIRST, then the create is slow: it has the last
    # 0.4 s. Given a fresh budget it would end at FIRST + BUDGET (1.6 s) at the earliest.
    api.responder = _route(
        {
            ("POST", "/gone"): lambda: _not_found(FIRST),
            ("POST", ""): lambda: _answer("fresh", delay=2.0),
        }
    )
    client.cookies["ntaid"] = "gone"
    response, ended = _ended(lambda: client.get("/mw/page/"))
    assert response.status_code == 200 and response.json()["degraded"] is True
    assert _calls(api) == [("POST", "/gone"), ("POST", "")]
    assert _api_seconds(api, ended) < FIRST + BUDGET - EPSILON
    assert len(_warnings(caplog)) == 1


def test_three_calls_of_a_sign_in_share_one_budget(
    client: Client, api: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    # A returning user on a device whose cookie profile is gone, and whose mapped profile is
    # gone too: identify on the cookie's id, then on the mapped id, then a create.
    ada = User.objects.create_user("ada", password="pw", first_name="Ada")
    ProfileMapping.objects.create(
        profile_id="mapped-gone", user=ada, external_id=str(ada.pk), organization_id="test-org"
    )
    # Half the budget for the first call, a little for the second: the create has the last
    # 0.45 s, time for two answers to reach the client on a loaded machine. A fresh budget for
    # the second call (the create's then runs from it) would end at first + BUDGET (1.5 s) at the
    # earliest, one for the create at 1.55 s.
    first = 0.5
    api.responder = _route(
        {
            ("POST", "/cookie-gone"): lambda: _not_found(first),
            ("POST", "/mapped-gone"): lambda: _not_found(0.05),
            ("POST", ""): lambda: _answer("fresh", delay=2.0),
        }
    )
    client.cookies["ntaid"] = "cookie-gone"
    response, ended = _ended(lambda: client.post("/mw/sign-in/", {"username": "ada"}))
    assert response.status_code == 200
    assert _calls(api) == [("POST", "/cookie-gone"), ("POST", "/mapped-gone"), ("POST", "")]
    assert _api_seconds(api, ended) < first + BUDGET - EPSILON
    assert len(_warnings(caplog)) == 1


def test_a_failed_sign_in_on_a_get_is_not_identified_again_by_the_page(
    client: Client, api: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    User.objects.create_user("ada", password="pw", first_name="Ada")
    api.responder = lambda request: _answer("slow", delay=2.0)  # the API is slow
    response, ended = _ended(lambda: client.get("/mw/magic-link/?username=ada"))
    assert response.status_code == 200
    assert response.json()["degraded"] is True and response.json()["name"] == "friend"
    assert len(_calls(api)) == 1  # the identify; the page's read started no call
    assert _api_seconds(api, ended) < BUDGET + MARGIN
    (line,) = _warnings(caplog)
    assert "identify" in line and "serving baseline" in line


def test_a_failed_identify_is_not_retried_but_the_page_is_still_personalized(
    client: Client, api: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    User.objects.create_user("ada", password="pw", first_name="Ada")
    answers = iter([error_envelope(500, "ERR_INTERNAL", "boom")])
    api.responder = lambda request: next(answers, None) or _answer("anonymous")
    response = client.get("/mw/magic-link/?username=ada")
    data = response.json()
    assert data["degraded"] is False and data["profile"] == "anonymous"
    first, second = api.requests
    assert [e["type"] for e in first.json()["events"]] == ["page", "identify"]
    assert [e["type"] for e in second.json()["events"]] == ["page"]  # no second identify
    assert not ProfileMapping.objects.exists()
    assert len(_warnings(caplog)) == 1


def test_identify_after_a_read_gets_what_the_read_left(
    client: Client, api: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The read answers after FIRST: the identify has the last 0.4 s. Given a fresh budget it
    # would end at FIRST + BUDGET (1.6 s) at the earliest. The view's work between the calls is
    # no API time and counts against the bound's 0.55 s to spare. (Timed from the request's
    # start, with Django's work before the read, a loaded machine took 1.56 s when right.)
    answers = iter([_answer("visitor", delay=FIRST)])
    api.responder = lambda request: next(answers, None) or _answer("visitor", delay=2.0)
    response, ended = _ended(lambda: client.get("/mw/read-then-identify/"))
    assert response.status_code == 200
    assert response.json()["degraded_before"] is False  # the read succeeded
    assert len(_calls(api)) == 2
    assert _api_seconds(api, ended) < FIRST + BUDGET - EPSILON
    (line,) = _warnings(caplog)
    assert "identify" in line


def test_no_call_starts_once_the_budget_is_spent_and_one_line_is_logged(
    client: Client, api: StubServer, caplog: pytest.LogCaptureFixture
) -> None:
    api.responder = lambda request: _answer("visitor", delay=2.0)
    response, ended = _ended(lambda: client.get("/mw/read-then-identify/"))
    assert response.status_code == 200 and response.json()["degraded"] is True
    assert len(_calls(api)) == 1  # the read timed out; the identify never started
    assert _api_seconds(api, ended) < BUDGET + MARGIN
    assert len(_warnings(caplog)) == 1


def test_time_the_view_spends_between_calls_is_not_api_time(
    client: Client, api: StubServer
) -> None:
    # The view works longer than the budget between two fast calls: both succeed. The budget
    # bounds what the API adds to the response time, not how long the view may take.
    api.responder = lambda request: _answer("visitor", delay=0.05)
    response = client.get("/mw/read-then-identify/", {"pause": str(BUDGET + 0.1)})
    data = response.json()
    assert data["degraded_before"] is False and data["degraded"] is False
    assert len(_calls(api)) == 2
