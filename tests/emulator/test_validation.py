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
from tests.emulator.conftest import Api, identify, page, track


def _error(response: requests.Response) -> str:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == {"code": "ERR_INVALID_DATA"} and body["data"] == {}
    return str(body["message"])


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
        ({"events": [page(), {"type": "track"}]}, "events[1].event"),
        ({"events": [{"type": "track", "event": 5}]}, "events[0].event"),
        ({"events": [{"type": "identify", "traits": {}}]}, "events[0].userId"),
        ({"events": [{"type": "identify", "userId": "u", "traits": []}]}, "events[0].traits"),
        ({"events": [{"type": "screen", "properties": {}}]}, "events[0].properties.name"),
        ({"events": [{"type": "screen"}]}, "events[0].properties.name"),
        ({"events": [{"type": "component"}]}, "events[0].componentId"),
        ({"events": [{"type": "component", "componentId": "c", "variantIndex": -1}]},
         "events[0].variantIndex"),
        ({"events": [dict(page(), timestamp="yesterday")]}, "events[0].timestamp"),
        ({"events": [dict(page(), context=[])]}, "events[0].context"),
        ({"events": [dict(page(), properties="x")]}, "events[0].properties"),
        ({"events": [page()], "options": []}, "'options'"),
        ({"events": [page()], "options": {"features": "location"}}, "options.features"),
    ],
)
def test_invalid_bodies_name_the_problem(api: Api, body: Any, names: str) -> None:
    assert names in _error(api.post("/profiles", body))


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
    component = {"type": "component", "componentId": "c", "componentType": "Entry",
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
event_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["page", "track", "identify", "screen", "component", "x"])},
    optional={"event": json_values, "userId": json_values, "traits": json_values,
              "properties": json_values, "context": json_values, "componentId": json_values,
              "experienceId": json_values, "variantIndex": json_values,
              "timestamp": json_values, "anonymousId": json_values, "messageId": json_values},
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
