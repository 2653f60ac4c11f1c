"""The client's own session is driven through urllib3's pools directly; anything the caller
changed (their session, headers, HTTP mocking in tests) is honoured."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from django_experience.api import ExperienceClient
from django_experience.api.errors import ConnectionFailed, MalformedResponse, RequestTimeout
from django_experience.api.events import page_event, track_event
from tests.api.test_http11 import ScriptedServer
from tests.stub_server import StubResponse, StubServer, ok_envelope

PROFILE = {
    "profile": {"id": "p-1", "stableId": "p-1", "random": 0.5, "audiences": [], "traits": {},
                "location": {}, "session": {"id": "s", "isReturningVisitor": False,
                                            "landingPage": {}, "count": 1,
                                            "activeSessionLength": 0,
                                            "averageSessionLength": 0}},
    "experiences": [],
    "changes": [],
}


def test_own_session_sends_the_same_request_as_requests_would(
    client: ExperienceClient, stub: StubServer
) -> None:
    client.session.headers["X-Site"] = "shop"  # a header the caller added to the session
    stub.responder = lambda request: ok_envelope(PROFILE)
    client.update_profile("p-1", [page_event("https://shop.example/")], preflight=True,
                          locale="de-DE", ip="203.0.113.9")
    (request,) = stub.requests
    assert request.path.endswith("/profiles/p-1")
    assert request.query == {"type": ["preflight"], "locale": ["de-DE"]}
    assert request.header("Content-Type") == "text/plain"
    assert (request.header("User-Agent") or "").startswith("django-experience/")
    assert request.header("X-Force-IP") == "203.0.113.9"
    assert request.header("X-Site") == "shop"
    assert request.header("Accept-Encoding") == "gzip, deflate"
    assert request.header("Content-Length") == str(len(request.body))


def test_patched_adapter_send_is_honoured(
    client: ExperienceClient, stub: StubServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # HTTP mocking libraries for tests replace HTTPAdapter.send: their answers must win.
    seen: list[str] = []
    original = HTTPAdapter.send

    def spying_send(self: HTTPAdapter, request: Any, *args: Any, **kwargs: Any) -> Any:
        seen.append(request.url)
        return original(self, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", spying_send)
    stub.responder = lambda request: ok_envelope(PROFILE)
    client.get_profile("p-1")
    assert len(seen) == 1 and seen[0].endswith("/profiles/p-1")


def test_another_adapter_mounted_is_honoured(client: ExperienceClient, stub: StubServer) -> None:
    used: list[str] = []

    class Recording(HTTPAdapter):
        def send(self, request: Any, *args: Any, **kwargs: Any) -> Any:
            used.append(request.url)
            return super().send(request, *args, **kwargs)

    client.session.mount(stub.url, Recording())
    stub.responder = lambda request: ok_envelope(PROFILE)
    client.get_profile("p-1")
    assert len(used) == 1


def test_connection_refused_is_a_connection_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{port}", timeout=0.5,
                              max_retries=0)
    with pytest.raises(ConnectionFailed):
        client.get_profile("p-1")


def test_dropped_connection_is_a_connection_failure(
    client: ExperienceClient, stub: StubServer
) -> None:
    stub.enqueue(*[StubResponse(drop=True)] * 3)
    with pytest.raises(ConnectionFailed):
        client.get_profile("p-1")


def test_slow_answer_is_a_timeout(stub: StubServer) -> None:
    client = ExperienceClient("org-1", base_url=stub.url, timeout=0.2, max_retries=0)
    stub.responder = lambda request: StubResponse(200, {"data": PROFILE}, delay=1.0)
    with pytest.raises(RequestTimeout):
        client.get_profile("p-1")


def test_a_callers_session_goes_through_requests(stub: StubServer) -> None:
    session = requests.Session()
    sent: list[str] = []
    session.hooks["response"].append(lambda response, **kwargs: sent.append(response.url))
    client = ExperienceClient("org-1", base_url=stub.url, session=session)
    stub.responder = lambda request: ok_envelope(PROFILE)
    client.get_profile("p-1")
    assert len(sent) == 1


def _head_lines(request: bytes) -> list[bytes]:
    return request.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:]


def test_session_header_changes_after_first_use_are_sent() -> None:
    # The merged headers are kept between calls: every later change must still reach the wire.
    answer = b'{"data":{"profiles":[]}}'
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
    server = ScriptedServer(lambda request: ([ok], False))
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                              max_retries=0)
    events = [track_event("a", anonymous_id="anon-1")]
    try:
        client.send_events(events)
        client.session.headers["X-Site"] = "shop"
        client.send_events(events)
        client.session.headers["x-site"] = "outlet"  # the same header, another spelling
        client.session.headers.update({"X-Team": "web"})
        client.send_events(events)
        del client.session.headers["X-Site"]
        client.session.headers.pop("X-Team")
        client.send_events(events)
        client.session.headers = {"X-Replaced": "yes"}  # no longer the client's own mapping
        client.send_events(events)
        client.session.headers["X-More"] = "1"
        client.send_events(events)
    finally:
        client.close()
        server.close()
    sent = [
        sorted(line for line in _head_lines(request) if line.lower().startswith(b"x-"))
        for request in server.requests
    ]
    assert sent == [
        [],
        [b"X-Site: shop"],
        [b"X-Team: web", b"x-site: outlet"],
        [],
        [b"X-Replaced: yes"],
        [b"X-More: 1", b"X-Replaced: yes"],
    ]
    assert all(b"Content-Type: application/json" in _head_lines(r) for r in server.requests)


def test_session_header_values_are_sent_as_requests_sends_them() -> None:
    # A None value removes the header, a bytes value goes out as it is: on both routes alike.
    server = ScriptedServer(lambda request: ([_ok_profile()], False))
    url = f"http://127.0.0.1:{server.port}"
    own = ExperienceClient("org-1", base_url=url, timeout=2.0, max_retries=0)
    theirs = ExperienceClient(
        "org-1", base_url=url, timeout=2.0, max_retries=0, session=requests.Session()
    )
    try:
        for client in (own, theirs):
            headers = {"X-Bytes": b"caf\xe9", "X-None": None, "X-Text": "t"}
            client.session.headers.update(headers)  # type: ignore[arg-type]  # None: requests drops it
            client.update_profile("p-1", [page_event("https://shop.example/")])
    finally:
        own.close()
        theirs.close()
        server.close()
    kept_alive, through_requests = (
        sorted(line for line in _head_lines(r) if line.lower().startswith(b"x-"))
        for r in server.requests
    )
    assert kept_alive == [b"X-Bytes: caf\xe9", b"X-Text: t"]
    assert kept_alive == through_requests


def test_a_calls_header_replaces_the_sessions_as_requests_would() -> None:
    # ``X-Force-IP`` of the call wins over one the session carries: one header, the call's.
    server = ScriptedServer(lambda request: ([_ok_profile()], False))
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                              max_retries=0)
    client.session.headers["X-Force-IP"] = "198.51.100.1"
    try:
        client.update_profile("p-1", [page_event("https://shop.example/")], ip="203.0.113.9")
        client.update_profile("p-1", [page_event("https://shop.example/")])
    finally:
        client.close()
        server.close()
    with_ip, without_ip = ([line for line in _head_lines(r) if line.lower().startswith(b"x-force")]
                           for r in server.requests)
    assert with_ip == [b"X-Force-IP: 203.0.113.9"]
    assert without_ip == [b"X-Force-IP: 198.51.100.1"]


def _ok_profile() -> bytes:
    body = json.dumps({"data": PROFILE}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


def test_an_update_begun_is_sent_at_once_and_read_when_asked() -> None:
    server = ScriptedServer(lambda request: ([_ok_profile()], False))
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                              max_retries=0)
    try:
        pending = client.begin_update_profile("p-1", [page_event("https://shop.example/")],
                                              locale="de-DE")
        deadline = time.monotonic() + 2
        while not server.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        assert len(server.requests) == 1  # on the wire before anyone asked for the answer
        assert pending.result().profile.id == "p-1"
        # Dropped unread: its connection is closed, and the next call works on a new one.
        client.begin_update_profile("p-1", [page_event("https://shop.example/")]).cancel()
        assert client.update_profile("p-1", [page_event("https://shop.example/")]).profile.id
    finally:
        client.close()
        server.close()
    assert server.connections == 2
    assert b"locale=de-DE" in server.requests[0].split(b"\r\n", 1)[0]


def test_an_update_begun_is_retried_like_any_call() -> None:
    unavailable = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}"
    answers = iter([unavailable, _ok_profile()])
    server = ScriptedServer(lambda request: ([next(answers)], False))
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                              max_retries=1)
    client.retry_policy = type(client.retry_policy)(max_retries=1, backoff_base=0, jitter=0)
    try:
        pending = client.begin_update_profile("p-1", [page_event("https://shop.example/")])
        assert pending.result().profile.id == "p-1"
    finally:
        client.close()
        server.close()
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("offered", "sent"),
    [
        ("gzip, deflate, br, zstd", "gzip, deflate"),  # requests with brotli and zstandard
        ("br;q=1.0, gzip;q=0.5", "gzip;q=0.5"),
        ("br", "identity"),
        ("identity", "identity"),
    ],
)
def test_the_kept_alive_path_asks_only_for_codings_it_decodes(offered: str, sent: str) -> None:
    answer = json.dumps({"data": {"profiles": []}}).encode()
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer)
    server = ScriptedServer(lambda request: ([ok], False))
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                              max_retries=0)
    client.session.headers["Accept-Encoding"] = offered
    try:
        client.send_events([track_event("a", anonymous_id="anon-1")])
        client.send_events([track_event("b", anonymous_id="anon-1")])  # the merge, kept
    finally:
        client.close()
        server.close()
    for request in server.requests:
        assert f"Accept-Encoding: {sent}".encode() in _head_lines(request)


def test_an_answer_in_a_coding_never_asked_for_is_named_in_the_error() -> None:
    body = b"\x8b\x02\x80{}\x03"
    answer = (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: %d\r\n\r\n%s"
              % (len(body), body))
    server = ScriptedServer(lambda request: ([answer], False))
    client = ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                              max_retries=0)
    try:
        with pytest.raises(MalformedResponse, match="Content-Encoding 'br'"):
            client.get_profile("p-1")
    finally:
        client.close()
        server.close()
