"""Thread safety: concurrent requests lose nothing; a busy profile answers 429."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from django_experience.emulator import EmulatorServer, EmulatorState
from tests.emulator.conftest import Api, identify, page, track


def test_a_profile_locked_longer_than_the_wait_answers_overload() -> None:
    with EmulatorServer(state=EmulatorState(overload_wait=0.05)) as server:
        api = Api(server)
        profile_id = api.create(page())["profile"]["id"]
        lock = server.state.store.lock_for(f"profile\0{profile_id}")
        with lock:
            for response in (api.post(f"/profiles/{profile_id}", {"events": [track("x")]}),
                             api.get(f"/profiles/{profile_id}"),
                             api.post("/events", {"events": [dict(track("x"),
                                                                  anonymousId=profile_id)]})):
                assert response.status_code == 429
                assert response.json()["error"]["code"] == "ERR_PROFILE_OVERLOAD"
        assert api.post(f"/profiles/{profile_id}", {"events": [track("x")]}).status_code == 200
        stored = server.state.profile_json(profile_id)
        assert stored is not None and len(stored["events"]) == 2  # nothing half-applied


def test_concurrent_updates_of_one_profile_lose_no_event(server: EmulatorServer) -> None:
    api = Api(server)
    profile_id = api.create(page())["profile"]["id"]
    statuses: list[int] = []
    lock = threading.Lock()

    def send(n: int) -> None:
        worker = Api(server)
        for i in range(10):
            event = dict(track(f"e{n}-{i}"), messageId=f"{n}-{i}")
            response = worker.post(f"/profiles/{profile_id}", {"events": [event]})
            with lock:
                statuses.append(response.status_code)
        worker.session.close()

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(send, range(8)))
    accepted = statuses.count(200)
    assert set(statuses) <= {200, 429}
    stored = server.state.profile_json(profile_id)
    assert stored is not None and len(stored["events"]) == 1 + accepted
    assert server.state.stats_json()["events"] == 1 + accepted


def test_concurrent_creates_and_identifies_of_many_profiles(server: EmulatorServer) -> None:
    def visit(n: int) -> str:
        worker = Api(server)
        data = worker.create(page("/"), identify(f"user-{n % 5}", n=n))
        worker.session.close()
        return str(data["profile"]["id"])

    with ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(visit, range(40)))
    profiles = server.state.profiles_json()
    # Every user id ends up owned by exactly one surviving profile.
    owners = [p["userId"] for p in profiles]
    assert sorted(owners) == sorted({f"user-{n}" for n in range(5)})
    assert set(ids) >= {p["id"] for p in profiles}
    assert sum(len(p["events"]) for p in profiles) == 80
