"""Validation: every rule names the field, batch limits name the limit, bad input never 500s."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_experience.emulator import EmulatorServer
from tests.emulator.conftest import LIBRARY, Api, component, event, identify, page, track


def _error(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == {"code": "ERR_INVALID_DATA"} and body["data"] == {}
    return str(body["message"])


def _without(event: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in event.items() if k not in keys}


def _screen() -> dict[str, Any]:
    return event("screen", properties={"name": "Home"})


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"events": [{"type": "track", "event": "x", "properties": {"v": NaN}}]}',
         "not valid JSON"),
        (b"", "empty"),
        (b"[1, 2]", "JSON object"),
        (b"\xff\xfe", "UTF-8"),
        ({}, "'events'"),
        ({"events": []}, "'events'"),
        ({"events": "page"}, "'events'"),
        ({"events": [1]}, "events[0]"),
        ({"events": [{}]}, "events[0].type"),
        ({"events": [{"type": "alias"}]}, "events[0].type"),
        ({"events": [page(), _without(track("x"), "event")]}, "events[1].event"),
        ({"events": [dict(track("x"), event=5)]}, "events[0].event"),
        ({"events": [dict(track("x"), event="")]}, "events[0].event"),
        ({"events": [_without(identify("u"), "userId")]}, "events[0].userId"),
        ({"events": [dict(identify("u"), traits=[])]}, "events[0].traits"),
        ({"events": [dict(_screen(), properties={})]}, "events[0].properties.name"),
        ({"events": [_without(_screen(), "properties")]}, "events[0].properties.name"),
        ({"events": [_without(component("c"), "componentId")]}, "events[0].componentId"),
        ({"events": [component("c", variant_index=-1)]}, "events[0].variantIndex"),
        ({"events": [dict(page(), timestamp="yesterday")]}, "events[0].timestamp"),
        ({"events": [dict(page(), context=[])]}, "events[0].context"),
        ({"events": [dict(page(), properties="x")]}, "events[0].properties"),
        ({"events": [page()], "options": []}, "'options'"),
        ({"events": [page()], "options": {"features": "location"}}, "options.features"),
    ],
)
def test_invalid_bodies_name_the_problem(api: Api, body: Any, names: str) -> None:
    assert names in _error(api.post("/profiles", body))


def _page_without(key: str) -> dict[str, Any]:
    built = page()
    built["properties"] = _without(built["properties"], key)
    return built


# What the document's Event type marks required, one case per rule; the message names the
# field and the event's index.
@pytest.mark.parametrize(
    ("events", "options", "names"),
    [
        *[([_without(valid, "messageId")], None, "events[0].messageId is required")
          for valid in (page(), track("x"), identify("u"), _screen(), component())],
        ([dict(page(), messageId="")], None, "events[0].messageId is required"),
        ([dict(page(), messageId=5)], None, "events[0].messageId must be a string"),
        ([dict(track("x"), timestamp="")], None, "events[0].timestamp is not an ISO 8601 date"),
        ([page(), dict(identify("u"), timestamp=True)], None, "events[1].timestamp"),
        ([_without(page(), "channel")], None, "events[0].channel is required"),
        ([dict(page(), channel="tv")], None, 'events[0].channel "tv" is not one of web, mobile'),
        ([dict(page(), channel="WEB")], None, "events[0].channel"),
        ([_without(track("x"), "context")], None, "events[0].context is required"),
        ([dict(track("x"), context={})], None, "events[0].context.library is required"),
        ([dict(track("x"), context={"library": {"version": "1"}})], None,
         "events[0].context.library.name is required"),
        ([dict(track("x"), context={"library": {"name": "x", "version": 1}})], None,
         "events[0].context.library.version must be a string"),
        ([_without(page(), "properties")], None, "events[0].properties is required"),
        *[([_page_without(key)], None, f"events[0].properties.{key} is required for page")
          for key in ("path", "query", "referrer", "search", "url")],
        ([dict(page(), properties={**page()["properties"], "query": "?a=1"})], None,
         "events[0].properties.query must be an object"),
        ([dict(page(), properties={**page()["properties"], "path": 5})], None,
         "events[0].properties.path must be a string"),
        ([track("x"), _without(track("y"), "properties")], None,
         "events[1].properties is required for track"),
        ([_without(identify("u"), "traits")], None, "events[0].traits is required for identify"),
        ([dict(identify("u"), traits=None)], None, "events[0].traits is required"),
        ([dict(component("c"), componentType="Nope")], None,
         'events[0].componentType "Nope" is not one of Entry, Variable'),
        ([page()], {"features": ["bogus"]},
         'options.features[0] "bogus" is not one of location, ip-enrichment'),
        ([page()], {"features": ["location", 5]}, "options.features[1]"),
    ],
)
def test_documented_required_fields_are_enforced(
    api: Api, events: list[Any], options: dict[str, Any] | None, names: str
) -> None:
    body: dict[str, Any] = {"events": events}
    if options is not None:
        body["options"] = options
    assert names in _error(api.post("/profiles", body))
    assert api.server.state.profiles_json() == []


def test_the_batch_endpoint_enforces_them_too(api: Api) -> None:
    events = [dict(track("x"), anonymousId="a"),
              dict(_without(page(), "messageId"), anonymousId="a")]
    assert "events[1].messageId is required" in _error(api.post("/events", {"events": events}))


@pytest.mark.parametrize(
    "valid",
    [
        *[dict(page(), channel=channel) for channel in ("web", "mobile", "server", "client")],
        dict(identify(""), traits={}),  # the official SDK before consent
        dict(component("c"), componentType="Variable"),
        _without(component("c"), "componentType"),
        dict(track("x"), timestamp=1714564800000),
        _without(track("x"), "timestamp"),  # the Event type wants one; the Create example has none
        dict(identify("u"), timestamp=None),
        dict(page(), properties={"path": "", "query": {}, "referrer": "", "search": "", "url": ""}),
    ],
)
def test_valid_events_still_pass(api: Api, valid: dict[str, Any]) -> None:
    choices: list[dict[str, Any] | None] = [
        None, {"features": []}, {"features": ["location", "ip-enrichment"]}]
    for options in choices:
        body: dict[str, Any] = {"events": [valid]}
        if options is not None:
            body["options"] = options
        response = api.post("/profiles", body)
        assert response.status_code == 200, response.text


def test_a_client_channel_is_stored_as_web(api: Api, server: EmulatorServer) -> None:
    profile_id = api.create(dict(page(), channel="client"))["profile"]["id"]
    stored = server.state.profile_json(profile_id)
    assert stored is not None and stored["events"][0]["channel"] == "web"


def test_the_libraries_own_event_builders_are_accepted(api: Api) -> None:
    from django_experience.api import events as builders

    built = [
        builders.page_event("https://example.com/a?utm_campaign=x", title="A"),
        builders.track_event("Added to cart", {"sku": "1"}),
        builders.identify_event("user-1", {"plan": "pro"}),
        builders.identify_event("user-1"),
        builders.screen_event("Home"),
        builders.component_event("hero"),
        builders.component_event("hero", experience_id="exp", variant_index=1,
                                 component_type="Variable"),
    ]
    response = api.post("/profiles", {"events": built})
    assert response.status_code == 200, response.text
    views = builders.component_view_events(
        [("anon-1", builders.component_view("hero", experience_id="exp", variant_index=0))])
    batch = [*views, builders.track_event("x", anonymous_id="anon-1")]
    response = api.post("/events", {"events": batch}, text_plain=False)
    assert response.status_code == 200, response.text


def test_the_documents_create_example_without_a_timestamp_is_accepted(
        api: Api, server: EmulatorServer) -> None:
    # The Create profile request of the document, as it stands there: it has no timestamp.
    query = {"utm_campaign": "example_campaign", "utm_content": "example_content"}
    search = "?utm_campaign=example_campaign&utm_content=example_content"
    example = {
        "channel": "web",
        "context": {
            "app": {"name": "Ninetailed Analytics SDK", "version": "1.0.0"},
            "library": {"name": "Ninetailed Analytics SDK", "version": "1.0.0"},
            "userAgent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7)",
            "campaign": {}, "locale": "en-US",
            "page": {"path": "/", "query": query, "referrer": "", "search": search,
                     "url": f"https://example.com/{search}"}},
        "messageId": "abcd1234-efgh-5678-90ab-cdef11122222",
        "type": "page",
        "properties": {"title": "Sample Page", "url": f"https://example.com/{search}",
                       "path": "/", "hash": "", "search": search, "width": "1920",
                       "height": "1080", "query": query, "referrer": ""}}
    response = api.post("/profiles", {"events": [example]}, text_plain=False)
    assert response.status_code == 200, response.text
    profile = response.json()["data"]["profile"]
    # It happened when it came in: the session it opens is a live one.
    assert profile["session"]["count"] == 1
    assert profile["session"]["landingPage"]["query"] == query
    stored = server.state.profile_json(profile["id"])
    assert stored is not None and stored["events"][0]["messageId"] == example["messageId"]


def test_the_documents_examples_with_a_timestamp_are_accepted(api: Api) -> None:
    context = {"library": {"name": "Ninetailed Analytics SDK", "version": "1.0.0"},
               "locale": "en-US",
               "page": {"path": "/", "query": {}, "referrer": "", "search": "",
                        "url": "https://example.com/"}}
    update = {"channel": "web", "context": {**context, "campaign": {}},
              "messageId": "58f358f2-a858-11ed-afa1-0242ac120002",
              "timestamp": "2022-10-10T14:36:51.262Z", "type": "identify",
              "traits": {"favAnimal": "fox"}, "userId": "asdf"}
    assert api.post("/profiles/doc-1", {"events": [update]}).status_code == 200
    batch = [
        {"channel": "web", "context": context,
         "messageId": "58f358f2-a858-11ed-afa1-0242ac120003",
         "anonymousId": "18635fe9cc665fd113547e897c13862b",
         "timestamp": "2022-01-01T00:00:00.000Z", "type": "page",
         "properties": {"title": "Sample Page", "url": "https://example.com/", "path": "/",
                        "hash": "", "search": "", "width": 1419, "height": 1226, "query": {},
                        "referrer": ""}},
        {"channel": "web", "context": context,
         "messageId": "68a459e3-b959-22fe-bfb2-1353bd230003",
         "anonymousId": "18635fe9cc665fd113547e897c13862b", "userId": "user1", "traits": {},
         "timestamp": "2022-01-01T00:00:01.000Z", "type": "identify"},
    ]
    assert api.post("/events", {"events": batch}, text_plain=False).status_code == 200


@pytest.mark.parametrize("depth", [70, 900, 5000])
def test_deeply_nested_bodies_are_refused(api: Api, depth: int) -> None:
    traits = '{"a":' * depth + "1" + "}" * depth
    body = '{"events":[{"type":"identify","userId":"u","traits":' + traits + "}]}"
    assert "nested" in _error(api.post("/profiles", body))


def test_events_as_the_official_sdk_builds_them_are_accepted(api: Api) -> None:
    sdk_page = {
        "channel": "web", "messageId": "6b3f8f1e-0000-4000-8000-000000000001",
        "originalTimestamp": "2024-01-01T00:00:00.000Z", "timestamp": "2024-01-01T00:00:00.000Z",
        "sentAt": "2024-01-01T00:00:00.000Z", "type": "page",
        "context": {"library": {"name": "Ninetailed React Analytics SDK", "version": "7.26.0"},
                    "userAgent": "Mozilla/5.0", "campaign": {"name": "spring"},
                    "locale": "en-US", "gdpr": {"isConsentGiven": True},
                    "page": {"path": "/", "query": {"utm_campaign": "spring"}, "referrer": "",
                             "search": "?utm_campaign=spring",
                             "url": "https://example.com/?utm_campaign=spring"}},
        "properties": {"path": "/", "query": {"utm_campaign": "spring"}, "referrer": "",
                       "search": "?utm_campaign=spring", "title": "",
                       "url": "https://example.com/?utm_campaign=spring", "width": 1024},
        "extraField": {"anything": [1, 2]},
    }
    sdk_identify = {**{k: v for k, v in sdk_page.items() if k != "properties"},
                    "type": "identify", "userId": "", "traits": {}}
    assert api.post("/profiles", {"events": [sdk_page, sdk_identify],
                                  "options": {"features": ["location"]}}).status_code == 200
    component = {**{k: v for k, v in sdk_page.items() if k != "properties"},
                 "type": "component", "componentId": "c", "componentType": "Entry",
                 "experienceId": None, "variantIndex": None, "viewDurationMs": None}
    assert api.post("/profiles", {"events": [component]}).status_code == 200


def _batch(n: int, *, profiles: int = 1, kind: str = "track") -> list[dict[str, Any]]:
    event = identify("u") if kind == "identify" else track("t")
    return [dict(event, anonymousId=f"p{i % profiles}", messageId=f"m{i}") for i in range(n)]


def test_batch_limits_name_the_limit(api: Api) -> None:
    assert api.post("/events", {"events": _batch(200, profiles=50)}).status_code == 200
    assert "200 events" in _error(api.post("/events", {"events": _batch(201)}))
    assert api.post("/events", {"events": _batch(50, kind="identify")}).status_code == 200
    assert "50 identify" in _error(api.post("/events", {"events": _batch(51, kind="identify")}))
    assert "50 profiles" in _error(api.post("/events", {"events": _batch(51, profiles=51)}))
    missing = [track("t")]
    assert "events[0].anonymousId" in _error(api.post("/events", {"events": missing}))


def test_a_bad_profile_id_or_query_is_invalid_data(api: Api) -> None:
    assert "profileId" in _error(api.get("/profiles/" + "x" * 300))
    assert "type" in _error(api.post("/profiles", {"events": [page()]},
                                     params={"type": "dry-run"}))


@pytest.fixture(scope="module")
def shared_api() -> Iterator[Api]:
    with EmulatorServer() as server:
        api = Api(server)
        yield api
        api.session.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12,
)
PAGE_PROPERTIES = {"path": "/", "query": {}, "referrer": "", "search": "",
                   "url": "https://example.com/"}
# Mostly valid base fields (so the fuzz reaches the per-type rules), each sometimes garbage.
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["page", "track", "identify", "screen", "component", "x"]),
     "messageId": st.uuids().map(str) | json_values,
     "timestamp": st.just("2024-01-01T00:00:00.000Z") | json_values,
     "channel": st.sampled_from(["web", "mobile", "server", "client"]) | json_values,
     "context": st.just({"library": LIBRARY}) | json_values},
    optional={"event": json_values, "userId": json_values, "traits": json_values,
              "properties": st.just(PAGE_PROPERTIES) | json_values,
              "componentId": json_values, "componentType": json_values,
              "experienceId": json_values, "variantIndex": json_values,
              "anonymousId": json_values},
)
bodies = st.one_of(
    st.binary(max_size=64),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.fixed_dictionaries({"events": st.lists(event_like, max_size=4)},
                          optional={"options": json_values}).map(
        lambda v: json.dumps(v).encode()),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                   HealthCheck.function_scoped_fixture])
@given(body=bodies, path=st.sampled_from(["/profiles", "/profiles/fuzz-id", "/events",
                                          "/import/events"]),
       preflight=st.booleans())
def test_fuzzed_bodies_never_cause_a_server_error(shared_api: Api, body: bytes, path: str,
                                                  preflight: bool) -> None:
    params = {"type": "preflight"} if preflight else None
    response = shared_api.post(path, body, params=params)
    assert response.status_code in (200, 400), response.text
    envelope = response.json()
    if response.status_code == 400:
        assert envelope["error"]["code"] == "ERR_INVALID_DATA"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(segment=st.text(min_size=1, max_size=40).filter(lambda s: "/" not in s and "?" not in s
                                                        and "#" not in s))
def test_fuzzed_profile_ids_never_cause_a_server_error(shared_api: Api, segment: str) -> None:
    from urllib.parse import quote

    response = shared_api.session.get(shared_api.base + "/profiles/" + quote(segment, safe=""))
    assert response.status_code in (400, 404, 405), response.text


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.sampled_from(["type", "locale", "x"]), st.text(max_size=10),
                             max_size=3),
       content_type=st.sampled_from(["text/plain", "application/json", "application/x-www-form"
                                     "-urlencoded", "", "multipart/form-data; boundary=x"]))
def test_fuzzed_queries_and_content_types_never_cause_a_server_error(
    shared_api: Api, query: dict[str, str], content_type: str
) -> None:
    body = json.dumps({"events": [page()]})
    response = shared_api.session.post(shared_api.base + "/profiles", data=body, params=query,
                                       headers={"Content-Type": content_type})
    assert response.status_code in (200, 400), response.text
    if query.get("type", "preflight") == "preflight":
        assert response.status_code == 200


@pytest.mark.parametrize("raw", [
    b"GARBAGE\r\n\r\n",
    b"POST /v2/organizations/o/environments/e/profiles HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
    b"POST /v2/organizations/o/environments/e/profiles HTTP/1.1\r\nContent-Length: x\r\n\r\n",
    b"POST /v2/organizations/o/environments/e/profiles HTTP/1.1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"GET /" + b"a" * 70000 + b" HTTP/1.1\r\n\r\n",
    b"\x00\xff" * 100 + b"\r\n\r\n",
])
def test_garbage_on_the_socket_never_takes_the_server_down(shared_api: Api, raw: bytes) -> None:
    import socket

    with socket.create_connection(("127.0.0.1", shared_api.server.port), timeout=5) as sock:
        sock.sendall(raw)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    if answer.startswith(b"HTTP/"):  # unparsable request lines get an HTTP/0.9 style answer
        status = int(answer.split(b" ", 2)[1])
        assert status < 500 or status == 505 or status == 501, answer[:200]
    assert shared_api.get("/profiles/nobody").status_code == 404
