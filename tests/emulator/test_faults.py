"""Injected faults: each one over real HTTP, and the statistics they leave."""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time

import pytest
import requests

from django_experience.emulator import EmulatorServer, Faults
from django_experience.emulator import app as emulator_app
from django_experience.emulator.errors import ConfigError
from django_experience.emulator.handle import EmulatorHandle
from tests.emulator.conftest import Api, page


def test_error_rate_answers_the_configured_status(server: EmulatorServer, api: Api) -> None:
    server.state.set_faults(Faults(error_rate=1.0, error_status=503))
    response = api.post("/profiles", {"events": [page()]})
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "ERR_INTERNAL_SERVER_ERROR"
    assert server.state.profiles_json() == []
    assert server.state.stats.requests() == {"create": {"503": 1}}


@pytest.mark.parametrize(("status", "code"), [
    (400, "ERR_INVALID_DATA"), (404, "ERR_PROFILE_NOT_FOUND"), (429, "ERR_PROFILE_OVERLOAD"),
    (418, "ERR_INJECTED_FAULT"), (500, "ERR_INTERNAL_SERVER_ERROR"),
])
def test_an_injected_error_carries_the_code_of_its_status(
        server: EmulatorServer, api: Api, status: int, code: str) -> None:
    server.state.set_faults(Faults(error_rate=1.0, error_status=status))
    response = api.post("/profiles", {"events": [page()]})
    assert (response.status_code, response.json()["error"]["code"]) == (status, code)


def test_overload_rate_answers_429_with_optional_retry_after(server: EmulatorServer,
                                                             api: Api) -> None:
    server.state.set_faults(Faults(overload_rate=1.0))
    response = api.post("/profiles", {"events": [page()]})
    assert response.status_code == 429
    assert response.json()["error"]["code"] == "ERR_PROFILE_OVERLOAD"
    assert "Retry-After" not in response.headers
    server.state.set_faults(Faults(overload_rate=1.0, retry_after=2))
    assert api.get("/profiles/x").headers["Retry-After"] == "2"


def test_drop_rate_closes_the_connection_unanswered(server: EmulatorServer, api: Api) -> None:
    server.state.set_faults(Faults(drop_rate=1.0))
    with pytest.raises(requests.ConnectionError):
        api.post("/profiles", {"events": [page()]})
    assert server.state.stats.requests() == {"create": {"dropped": 1}}
    server.state.set_faults(Faults())
    assert api.post("/profiles", {"events": [page()]}).status_code == 200


def test_malformed_rate_answers_200_with_a_body_that_is_not_json(server: EmulatorServer,
                                                                 api: Api) -> None:
    server.state.set_faults(Faults(malformed_rate=1.0))
    response = api.post("/profiles", {"events": [page()]})
    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_latency_delays_the_answer(server: EmulatorServer, api: Api) -> None:
    server.state.set_faults(Faults(latency_ms=150))
    started = time.monotonic()
    assert api.get("/profiles/none").status_code == 404
    assert time.monotonic() - started >= 0.15


class _SleepSeen:
    """The emulator app's ``time`` module, telling when a request starts its injected wait."""

    def __init__(self) -> None:
        self.entered = threading.Event()

    def sleep(self, seconds: float) -> None:
        self.entered.set()
        time.sleep(seconds)

    def __getattr__(self, name: str) -> object:
        return getattr(time, name)


def test_a_request_delayed_across_a_reset_is_dropped_not_stored(
    server: EmulatorServer, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A test whose client gave up on a slow answer must not leak its events into the next
    # test's fresh state.
    clock = _SleepSeen()
    monkeypatch.setattr(emulator_app, "time", clock)
    server.state.set_faults(Faults(latency_ms=400))
    outcome: list[BaseException | int] = []

    def slow_create() -> None:
        try:
            outcome.append(api.post("/profiles", {"events": [page()]}).status_code)
        except requests.ConnectionError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=slow_create)
    thread.start()
    assert clock.entered.wait(10)  # the request now sleeps in the injected latency
    server.state.reset()
    thread.join(timeout=10)
    assert len(outcome) == 1 and isinstance(outcome[0], requests.ConnectionError), outcome
    assert server.state.stats_json()["events"] == 0
    assert server.state.profiles_json() == []
    assert api.post("/profiles", {"events": [page()]}).status_code == 200  # later ones are fine


def test_slow_body_sends_headers_at_once_and_trickles_the_body(server: EmulatorServer) -> None:
    server.state.set_faults(Faults(slow_body_ms=400))
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    started = time.monotonic()
    connection.request("POST", "/v2/organizations/o/environments/main/profiles",
                       body=json.dumps({"events": [page()]}))
    response = connection.getresponse()
    headers_after = time.monotonic() - started
    body = response.read()
    body_after = time.monotonic() - started
    connection.close()
    assert response.status == 200
    assert json.loads(body)["data"]["profile"]["id"]
    assert body_after - headers_after >= 0.3  # the body came well after the headers


def test_rates_between_zero_and_one_are_random_but_seedable(server: EmulatorServer,
                                                            api: Api) -> None:
    def statuses() -> list[int]:
        server.state.set_faults(Faults(error_rate=0.5, seed=7))
        return [api.get("/profiles/none").status_code for _ in range(40)]

    first = statuses()
    assert set(first) == {404, 500}
    assert statuses() == first


def test_faults_are_validated() -> None:
    for bad in ({"error_rate": 2}, {"latency_ms": -1}, {"nope": 1}, {"error_status": 200},
                {"drop_rate": "x"}):
        with pytest.raises(ConfigError):
            Faults.from_json(bad)


def test_control_api_faults_stats_and_reset(server: EmulatorServer, api: Api) -> None:
    assert api.control("POST", "faults", {"error_rate": 1, "error_status": 502}).status_code == 200
    assert api.control("GET", "faults").json()["data"]["error_status"] == 502
    assert api.post("/profiles", {"events": [page()]}).status_code == 502
    bad = api.control("POST", "faults", {"error_rate": 3})
    assert bad.status_code == 400 and "error_rate" in bad.json()["message"]
    assert api.control("DELETE", "faults").status_code == 200
    api.post("/profiles", {"events": [page()]})
    stats = api.control("GET", "stats").json()["data"]
    assert stats == {"requests": {"create": {"502": 1, "200": 1}}, "events": 1}
    assert api.control("GET", "stats").json()["data"] == stats  # control calls are not counted
    assert len(api.control("GET", "profiles").json()["data"]["profiles"]) == 1
    assert api.control("POST", "reset").status_code == 200
    assert api.control("GET", "stats").json()["data"] == {"requests": {}, "events": 0}
    assert api.control("GET", "profiles").json()["data"]["profiles"] == []


def test_control_api_profile_by_id_includes_events(api: Api) -> None:
    profile_id = api.create(page("/a"))["profile"]["id"]
    stored = api.control("GET", f"profiles/{profile_id}").json()["data"]
    assert stored["events"][0]["properties"]["path"] == "/a"
    assert stored["organization"] == "org-1" and stored["environment"] == "main"
    missing = api.control("GET", "profiles/nope")
    assert missing.status_code == 404


def test_faults_leave_the_control_api_alone(server: EmulatorServer, api: Api) -> None:
    server.state.set_faults(Faults(error_rate=1.0, drop_rate=0.0))
    assert api.control("GET", "stats").status_code == 200


def test_stop_refuses_connections_and_start_serves_the_same_port(server: EmulatorServer,
                                                                 api: Api) -> None:
    profile_id = api.create(page())["profile"]["id"]
    port = server.port
    server.stop()
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0
    with pytest.raises(requests.ConnectionError):
        api.get(f"/profiles/{profile_id}")
    server.start()
    assert server.port == port
    assert api.get(f"/profiles/{profile_id}").status_code == 200


def test_a_request_held_by_latency_is_received_before_it_is_answered(
    experience_emulator: EmulatorHandle,
) -> None:
    # What a test waits for to know a request is in flight (test_interrupt's second Ctrl-C).
    experience_emulator.faults(latency_ms=600)
    client = experience_emulator.client()
    thread = threading.Thread(target=lambda: client.create_profile([page()], timeout=5))
    thread.start()
    deadline = time.monotonic() + 5
    while experience_emulator.received_count("create") < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert experience_emulator.received_count("create") == 1
    assert experience_emulator.request_count("create") == 0  # held: not answered yet
    thread.join(timeout=5)
    assert experience_emulator.request_count("create") == 1
    assert experience_emulator.received_count() == 1
    experience_emulator.reset()
    assert experience_emulator.received_count() == 0
