"""Every endpoint over real HTTP: method, path, query string, headers and body."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import threading

import pytest

from django_experience.api import ExperienceClient, ProfileResult
from django_experience.api.encoding import encode, encode_events
from django_experience.api.errors import InvalidData, MalformedResponse, ProfileNotFound
from django_experience.api.events import identify_event, page_event, track_event
from tests.api.conftest import FAST_RETRIES
from tests.api.payloads import batch_answer, profile_answer, profile_result_json
from tests.stub_server import StubResponse, StubServer, error_envelope, ok_envelope

PREFIX = "/v2/organizations/org-1/environments/env-1"


def test_create_profile_sends_events_as_text_plain_json(
    stub: StubServer, client: ExperienceClient
) -> None:
    stub.responder = profile_answer
    event = page_event("https://shop.example/?utm_campaign=spring", title="Home")
    result = client.create_profile([event])

    request = stub.requests[-1]
    assert request.method == "POST"
    assert request.path == f"{PREFIX}/profiles"
    assert request.query == {}
    assert request.header("Content-Type") == "text/plain"
    assert request.header("X-Force-IP") is None
    assert request.json() == {"events": [event]}
    assert isinstance(result, ProfileResult)


def test_create_profile_options_preflight_locale_and_ip(
    stub: StubServer, client: ExperienceClient
) -> None:
    stub.responder = profile_answer
    client.create_profile(
        [track_event("Signed up")],
        preflight=True,
        locale="de",
        features=["location", "ip-enrichment"],
        location={"city": "Berlin", "countryCode": "DE"},
        ip="203.0.113.7",
    )
    request = stub.requests[-1]
    assert request.query == {"type": ["preflight"], "locale": ["de"]}
    assert request.header("X-Force-IP") == "203.0.113.7"
    assert request.json()["options"] == {
        "features": ["location", "ip-enrichment"],
        "location": {"city": "Berlin", "countryCode": "DE"},
    }


def test_options_leave_out_empty_features(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = profile_answer
    client.create_profile([track_event("a")], features=[])
    assert "options" not in stub.requests[-1].json()
    client.update_profile("p-1", [track_event("a")], features=[], location={"city": "Rome"})
    assert stub.requests[-1].json()["options"] == {"location": {"city": "Rome"}}


def test_update_profile_path_and_options(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = profile_answer
    event = identify_event("user-7", {"tier": "gold"})
    client.update_profile("p-1", [event], locale="fr", features=["location"], ip="198.51.100.1")
    request = stub.requests[-1]
    assert request.method == "POST"
    assert request.path == f"{PREFIX}/profiles/p-1"
    assert request.query == {"locale": ["fr"]}
    assert request.header("Content-Type") == "text/plain"
    assert request.header("X-Force-IP") == "198.51.100.1"
    # Asked to resolve the visitor's location: the event's "resolve none" is left out.
    sent = {**event, "context": {k: v for k, v in event["context"].items() if k != "location"}}
    assert request.json() == {"events": [sent], "options": {"features": ["location"]}}


def test_without_the_location_feature_no_location_is_resolved_from_the_sender(
    stub: StubServer, client: ExperienceClient
) -> None:
    """Our library version is below 3.14: without an empty ``context.location`` the API would
    resolve the location of the server sending the events and put it on the profile."""
    stub.responder = profile_answer
    client.update_profile("p-1", [page_event("https://shop.example/")], location={"city": "Rome"})
    client.create_profile([identify_event("u-1", {})], features=["ip-enrichment"])
    stub.responder = lambda request: ok_envelope({"profiles": []})
    client.upsert_profiles([track_event("a", anonymous_id="p-1")])
    for request in stub.requests:
        assert all(event["context"]["location"] == {} for event in request.json()["events"])
    assert stub.requests[0].json()["options"] == {"location": {"city": "Rome"}}  # the CDN's


def test_update_profile_preflight(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = profile_answer
    client.update_profile("p-1", [track_event("a")], preflight=True)
    assert stub.requests[-1].query == {"type": ["preflight"]}


def test_profile_id_is_escaped_in_the_path(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = profile_answer
    client.get_profile("a/b c")
    assert stub.requests[-1].path == f"{PREFIX}/profiles/a%2Fb%20c"


def test_get_profile(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = profile_answer
    result = client.get_profile("p-1", locale="en")
    request = stub.requests[-1]
    assert (request.method, request.path, request.query) == (
        "GET",
        f"{PREFIX}/profiles/p-1",
        {"locale": ["en"]},
    )
    assert request.body == b""
    # Typed results, not raw dicts.
    assert result.profile.id == "p-1"
    assert result.profile.stable_id == "p-1"
    assert result.profile.audiences == ("aud-1",)
    assert result.profile.traits == {"favAnimal": "fox"}
    assert result.profile.location["city"] == "Berlin"
    assert result.profile.session is not None and result.profile.session.id == "sess-1"
    (experience,) = result.experiences
    assert (experience.experience_id, experience.variant_index, experience.sticky) == (
        "exp-1",
        1,
        True,
    )
    assert experience.variants == {"entryA": "entryB"}
    (change,) = result.changes
    assert (change.key, change.type, change.value) == ("heroTitle", "Variable", "Welcome back!")
    assert change.meta == {"experienceId": "exp-2", "variantIndex": 1}


def test_delete_profile(stub: StubServer, client: ExperienceClient) -> None:
    client.delete_profile("p-9")
    request = stub.requests[-1]
    assert (request.method, request.path, request.body) == ("DELETE", f"{PREFIX}/profiles/p-9", b"")


def test_upsert_profiles_sends_json_and_returns_profiles(
    stub: StubServer, client: ExperienceClient
) -> None:
    stub.responder = batch_answer
    events = [
        track_event("a", anonymous_id="anon-1"),
        identify_event("u-2", {"x": 1}, anonymous_id="anon-2"),
    ]
    profiles = client.upsert_profiles(events, locale="it")
    request = stub.requests[-1]
    assert (request.method, request.path) == ("POST", f"{PREFIX}/events")
    assert request.query == {"locale": ["it"]}
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {"events": events}  # no options on batch endpoints
    assert [p.id for p in profiles] == ["anon-1", "anon-2"]


def test_upsert_profiles_latest_answer_wins(stub: StubServer, client: ExperienceClient) -> None:
    answered = iter(range(100))

    def numbered(request: object) -> object:
        n = next(answered)
        return ok_envelope({"profiles": [{"id": "anon-1", "traits": {"answer": n}}]})

    stub.responder = numbered  # type: ignore[assignment]
    events = [track_event("a", anonymous_id="anon-1") for _ in range(450)]
    profiles = client.upsert_profiles(events)
    assert len(stub.requests) == 3
    assert [p.traits for p in profiles] == [{"answer": 2}]


def test_send_events_posts_the_batch_without_reading_its_profiles(
    stub: StubServer, client: ExperienceClient
) -> None:
    # Profiles that would not parse: send_events never reads them, upsert_profiles does.
    stub.responder = lambda request: ok_envelope({"profiles": [{"id": 7}]})
    events = [track_event("a", anonymous_id=f"anon-{n}") for n in range(60)]
    client.send_events(events, locale="it")
    assert [(r.method, r.path) for r in stub.requests] == [("POST", f"{PREFIX}/events")] * 2
    assert stub.requests[0].query == {"locale": ["it"]}
    assert [e for r in stub.requests for e in r.json()["events"]] == events
    with pytest.raises(MalformedResponse):
        client.upsert_profiles(events[:1])


def test_send_events_raises_the_apis_errors(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = lambda request: error_envelope(404, "ERR_PROFILE_NOT_FOUND", "gone")
    with pytest.raises(ProfileNotFound):
        client.send_events([track_event("a", anonymous_id="anon-1")])
    sent = len(stub.requests)
    with pytest.raises(InvalidData):  # an event without anonymousId: nothing is sent
        client.send_events([track_event("a")])
    assert len(stub.requests) == sent


@pytest.mark.parametrize("call", ["upsert_profiles", "send_events", "import_events"])
def test_batch_calls_keep_each_request_within_max_batch_bytes(stub: StubServer, call: str) -> None:
    # Well within the API's counts (20 events, 10 profiles), not within the bytes.
    events = [
        identify_event(f"user-{n}", {"bio": "x" * 900, "n": n}, anonymous_id=f"anon-{n % 10}")
        for n in range(20)
    ]
    stub.responder = batch_answer
    with ExperienceClient(
        "org-1", environment="env-1", base_url=stub.url, max_batch_bytes=4096
    ) as client:
        getattr(client, call)(events)
    bodies = [request.body for request in stub.requests]
    assert len(bodies) >= 5 and all(len(body) <= 4096 for body in bodies)
    assert [e for r in stub.requests for e in r.json()["events"]] == events  # in order, once


def test_an_event_that_is_not_json_sends_none_of_the_batch(
    stub: StubServer, client: ExperienceClient
) -> None:
    events = [track_event("a", anonymous_id=f"anon-{n}") for n in range(60)]  # two requests
    events[-1]["properties"] = {"ratio": float("nan")}  # after the builder, which checks it
    with pytest.raises(InvalidData, match="JSON"):
        client.send_events(events)
    assert stub.requests == []  # not the first request's 50 valid events either


@pytest.mark.parametrize("value", [0, 1023, 2.5e6, "1MB"])
def test_max_batch_bytes_is_checked(stub: StubServer, value: object) -> None:
    with pytest.raises(ValueError, match="max_batch_bytes"):
        ExperienceClient("org-1", base_url=stub.url, max_batch_bytes=value)  # type: ignore[arg-type]


def test_import_events(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = lambda request: ok_envelope({"message": "Events accepted."})
    events = [track_event("a", anonymous_id="anon-1")]
    client.import_events(events, locale="en")
    request = stub.requests[-1]
    assert (request.method, request.path) == ("POST", f"{PREFIX}/import/events")
    assert request.query == {"locale": ["en"]}
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {"events": events}


def test_empty_batches_send_nothing(stub: StubServer, client: ExperienceClient) -> None:
    assert client.upsert_profiles([]) == []
    client.import_events([])
    assert stub.requests == []


def test_single_profile_endpoints_refuse_empty_or_bad_events(
    stub: StubServer, client: ExperienceClient
) -> None:
    with pytest.raises(InvalidData, match="must not be empty"):
        client.create_profile([])
    with pytest.raises(InvalidData, match=r"events\[1\]"):
        client.update_profile("p-1", [track_event("a"), "nope"])  # type: ignore[list-item]
    with pytest.raises(InvalidData, match="profile_id"):
        client.get_profile("")
    with pytest.raises(InvalidData, match="JSON"):
        client.create_profile([{"type": "track", "event": "a", "properties": {"x": object()}}])
    with pytest.raises(InvalidData, match="JSON"):  # NaN is not JSON
        client.create_profile([{"type": "track", "event": "a", "properties": {"x": float("nan")}}])
    assert stub.requests == []


def test_dates_and_uuids_in_events_are_sent_as_text(
    stub: StubServer, client: ExperienceClient
) -> None:
    import datetime
    import uuid

    stub.responder = profile_answer
    moment = datetime.datetime(2024, 5, 1, 12, 0, tzinfo=datetime.timezone.utc)
    key = uuid.UUID(int=1)
    client.create_profile([{"type": "track", "event": "a", "properties": {"at": moment,
                                                                          "day": moment.date(),
                                                                          "key": key}}])
    sent = stub.requests[-1].json()["events"][0]["properties"]
    assert sent == {"at": "2024-05-01T12:00:00+00:00", "day": "2024-05-01", "key": str(key)}


def test_base_url_keeps_its_path_prefix(stub: StubServer) -> None:
    stub.responder = profile_answer
    with ExperienceClient("org-1", base_url=f"{stub.url}/proxy/experience/") as client:
        client.get_profile("p-1")
        client.delete_profile("p-1")
    assert [r.path for r in stub.requests] == [
        "/proxy/experience/v2/organizations/org-1/environments/main/profiles/p-1"
    ] * 2


def test_default_base_url_and_environment() -> None:
    client = ExperienceClient("org-1")
    assert client.url("/profiles") == (
        "https://experience.ninetailed.co/v2/organizations/org-1/environments/main/profiles"
    )
    assert client.timeout > 0 and client.max_retries >= 0


def test_constructor_refuses_bad_configuration() -> None:
    with pytest.raises(ValueError, match="organization_id"):
        ExperienceClient("")
    with pytest.raises(ValueError, match="base_url"):
        ExperienceClient("org", base_url="experience.example")
    with pytest.raises(ValueError, match="timeout"):
        ExperienceClient("org", timeout=0)


def test_pool_is_sized_for_threaded_servers_and_shared_between_threads(stub: StubServer) -> None:
    stub.responder = profile_answer
    client = ExperienceClient("org-1", base_url=stub.url, retry_policy=FAST_RETRIES)
    adapter = client.session.get_adapter(stub.url)
    assert adapter._pool_maxsize >= 32  # type: ignore[attr-defined]

    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                assert client.get_profile("p-1").profile.id == "p-1"
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert failures == []
    assert len(stub.requests) == 80
    client.close()


def test_api_package_never_imports_django() -> None:
    code = (
        "import sys\n"
        "import django_experience.api, django_experience.api.client, django_experience.api.events\n"
        "import django_experience.api.batching, django_experience.api.scheduling\n"
        "assert not [m for m in sys.modules if m == 'django' or m.startswith('django.')], "
        "sorted(m for m in sys.modules if m.startswith('django'))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 0, completed.stderr


def test_compressed_answers_are_decoded(stub: StubServer, client: ExperienceClient) -> None:
    body = json.dumps({"data": profile_result_json("p-gz"), "error": None}).encode()
    stub.responder = lambda request: StubResponse(
        200, gzip.compress(body), headers={"Content-Encoding": "gzip"}
    )
    assert client.get_profile("p-gz").profile.id == "p-gz"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_process_gets_its_own_connection_pool(
    stub: StubServer, client: ExperienceClient
) -> None:
    stub.responder = profile_answer
    client.get_profile("p-1")  # the parent's pool now holds a kept-alive connection
    parent_session = client.session
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            fresh = client.session is not parent_session
            code = 0 if fresh and client.get_profile("p-1").profile.id == "p-1" else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    assert client.session is parent_session
    assert len(stub.requests) == 2


def test_proxy_from_the_environment_is_used(
    stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    stub.responder = profile_answer
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("http_proxy", stub.url)  # the stub plays the proxy
    client = ExperienceClient("org-1", base_url="http://experience.invalid/prefix")
    client.get_profile("p-1")
    request = stub.requests[-1]
    assert request.header("Host") == "experience.invalid"
    assert request.path == "/prefix/v2/organizations/org-1/environments/main/profiles/p-1"


def test_encoded_upserts_and_imports_post_the_joined_body(
    stub: StubServer, client: ExperienceClient
) -> None:
    events = [identify_event(f"u-{n}", {"n": n}, anonymous_id=f"anon-{n}") for n in range(3)]
    stub.responder = batch_answer
    profiles = client.upsert_encoded_profiles(encode_events(events), locale="it")
    assert [p.id for p in profiles] == ["anon-0", "anon-1", "anon-2"]
    stub.responder = lambda request: ok_envelope({})
    client.import_encoded_events(encode_events(events))
    assert client.upsert_encoded_profiles([]) == []
    client.import_encoded_events([])  # nothing to send either
    upsert, imported = stub.requests
    assert (upsert.path, upsert.query) == (f"{PREFIX}/events", {"locale": ["it"]})
    assert imported.path == f"{PREFIX}/import/events"
    assert upsert.body == imported.body == encode({"events": events})


def test_encoded_upsert_of_ids_reads_only_the_ids(
    stub: StubServer, client: ExperienceClient
) -> None:
    events = [identify_event(f"u-{n}", {"n": n}, anonymous_id=f"anon-{n}") for n in range(3)]
    # Fields a full parse refuses (traits not an object) do not matter; a repeated id (two
    # rows merged into one profile) is given once, in the answer's order.
    stub.responder = lambda request: ok_envelope({"profiles": [
        {"id": "anon-1", "traits": "not an object"}, {"id": "anon-0"}, {"id": "anon-1"},
    ]})
    assert client.upsert_encoded_profile_ids(encode_events(events), locale="it") == [
        "anon-1", "anon-0"]
    (request,) = stub.requests
    assert (request.path, request.query) == (f"{PREFIX}/events", {"locale": ["it"]})
    assert request.body == encode({"events": events})
    assert client.upsert_encoded_profile_ids([]) == []
    assert len(stub.requests) == 1  # nothing to send


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ({"profiles": {"id": "anon-0"}}, "data.profiles must be a list"),
        ([], "data.profiles must be a list"),
        ({"profiles": [{"id": "anon-0"}, {"id": 7}]}, "data.profiles[1].id"),
        ({"profiles": [{"id": ""}]}, "data.profiles[0].id"),
        ({"profiles": ["anon-0"]}, "data.profiles[0].id"),
    ],
)
def test_encoded_upsert_of_ids_refuses_an_answer_without_them(
    stub: StubServer, client: ExperienceClient, data: object, where: str
) -> None:
    stub.responder = lambda request: ok_envelope(data)
    with pytest.raises(MalformedResponse) as raised:
        client.upsert_encoded_profile_ids(encode_events([track_event("a", anonymous_id="a")]))
    assert where in str(raised.value)


def test_send_encoded_events_posts_the_joined_body(
    stub: StubServer, client: ExperienceClient
) -> None:
    events = [track_event("Café", {"n": n}, anonymous_id=f"anon-{n}") for n in range(3)]
    client.send_encoded_events(encode_events(events), locale="it")
    client.send_encoded_events([])  # nothing to send
    (request,) = stub.requests
    assert (request.method, request.path, request.query) == (
        "POST", f"{PREFIX}/events", {"locale": ["it"]})
    assert request.header("Content-Type") == "application/json"
    assert request.body == encode({"events": events})
