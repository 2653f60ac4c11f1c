"""Settings of the client's own session that its kept-alive path does not implement (a client
certificate, query parameters, hooks, cookies, ``trust_env``) send the call through
``requests``, which applies them, instead of being silently ignored."""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.events import track_event
from django_experience.api.retry import RetryPolicy
from tests.api.certificates import make_certificates
from tests.api.payloads import profile_answer
from tests.stub_server import StubServer

NO_RETRIES = RetryPolicy(max_retries=0)


@pytest.fixture(scope="module")
def profiles() -> Iterator[StubServer]:
    with StubServer(profile_answer) as server:
        yield server


@pytest.fixture
def stub(profiles: StubServer) -> StubServer:
    profiles.clear()
    return profiles


def _client(stub: StubServer) -> ExperienceClient:
    return ExperienceClient("org", base_url=stub.url, timeout=2, retry_policy=NO_RETRIES)


def test_the_untouched_session_takes_the_kept_alive_path(stub: StubServer) -> None:
    client = _client(stub)
    assert client._direct_route(client.session, client.url("/profiles/p-1"))


def test_session_params_are_sent(stub: StubServer) -> None:
    client = _client(stub)
    client.session.params = {"api_key": "k"}
    client.get_profile("p-1", locale="de-DE")
    assert stub.requests[0].query == {"api_key": ["k"], "locale": ["de-DE"]}


def test_session_hooks_are_called(stub: StubServer) -> None:
    client = _client(stub)
    seen: list[int] = []
    client.session.hooks["response"].append(lambda r, *a, **k: seen.append(r.status_code))
    client.get_profile("p-1")
    assert seen == [200]


def test_cookies_set_on_the_session_are_sent(stub: StubServer) -> None:
    client = _client(stub)
    client.session.cookies.set("edge", "v1")
    client.get_profile("p-1")
    client.session.cookies.clear()
    client.get_profile("p-1")
    assert [r.header("Cookie") for r in stub.requests] == ["edge=v1", None]


def test_a_cookie_jar_put_in_place_is_used(stub: StubServer) -> None:
    client = _client(stub)
    jar = requests.cookies.RequestsCookieJar()
    jar.set("edge", "v2")
    client.session.cookies = jar
    client.get_profile("p-1")
    assert stub.requests[0].header("Cookie") == "edge=v2"


def test_trust_env_turned_back_on_reads_the_environment(
    stub: StubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login user password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    for proxy in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    client = _client(stub)
    client.session.trust_env = True  # requests then reads netrc, proxies and CA bundles anew
    client.get_profile("p-1")
    assert stub.requests[0].header("Authorization") == "Basic dXNlcjpzZWNyZXQ="


# -- a client certificate, against a server that requires one -------------------------------


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_certificates(tmp_path_factory.mktemp("tls"))


class MutualTLSServer:
    """Answers a profile over HTTPS to a client that shows a certificate of the test CA."""

    BODY = json.dumps({"data": {"profile": {"id": "p-1"}}, "error": None}).encode()

    def __init__(self, certificates: Path) -> None:
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
        self.context.load_verify_locations(certificates / "ca.pem")
        self.context.verify_mode = ssl.CERT_REQUIRED
        self.answered = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"https://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                raw, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    def _serve(self, raw: socket.socket) -> None:
        raw.settimeout(5)
        try:
            with self.context.wrap_socket(raw, server_side=True) as sock:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.BODY), self.BODY)
                )
                self.answered += 1
        except OSError:
            raw.close()  # no certificate shown: the handshake fails


def test_a_client_certificate_set_on_the_session_is_shown(
    certificates: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The CA comes from the environment, as the client reads it when it builds its session, so
    # the session's verify setting is its own.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates / "ca.pem"))
    server = MutualTLSServer(certificates)
    try:
        with ExperienceClient(
            "org", base_url=server.url, timeout=3, retry_policy=NO_RETRIES
        ) as client:
            client.session.cert = (
                str(certificates / "client.pem"),
                str(certificates / "client.key"),
            )
            assert client.get_profile("p-1").profile.id == "p-1"
    finally:
        server.close()
    assert server.answered == 1


def test_session_headers_in_another_case_are_replaced_not_sent_twice(stub: StubServer) -> None:
    # As requests merges them: one header per name whatever its case, the client's value
    # (per call) winning over the session's.
    client = _client(stub)
    client.session.headers["content-type"] = "application/json"
    client.session.headers["user-agent"] = "shop/1.0"
    client.update_profile("p1", [track_event("x")])
    [first] = stub.requests
    names = [name.lower() for name in first.headers]
    assert names.count("content-type") == 1
    assert names.count("user-agent") == 1
    assert {k.lower(): v for k, v in first.headers.items()}["content-type"] == "text/plain"


def test_a_calls_own_header_replaces_the_sessions_in_another_case(stub: StubServer) -> None:
    client = _client(stub)
    client.session.headers["x-force-ip"] = "198.51.100.1"
    client.update_profile("p1", [track_event("x")], ip="203.0.113.9")
    client.update_profile("p1", [track_event("x")])  # the session's value when the call has none
    first, second = stub.requests
    sent = [[(k.lower(), v) for k, v in request.headers.items() if k.lower() == "x-force-ip"]
            for request in (first, second)]
    assert sent == [[("x-force-ip", "203.0.113.9")], [("x-force-ip", "198.51.100.1")]]


def test_session_headers_replaced_by_a_plain_dict_are_merged_on_every_call(
    stub: StubServer,
) -> None:
    client = _client(stub)
    client.session.headers = {"X-Tenant": "t-1", "X-Shop": "a"}
    assert client._direct_route(client.session, client.url("/profiles/p1"))  # still kept alive
    client.update_profile("p1", [track_event("x")])
    client.session.headers["X-Shop"] = "b"  # a plain dict tells no one it changed
    client.session.headers["content-type"] = "application/json"
    client.update_profile("p1", [track_event("x")], ip="203.0.113.9")
    first, second = ({k.lower(): v for k, v in request.headers.items()}
                     for request in stub.requests)
    assert (first["x-tenant"], first["x-shop"]) == ("t-1", "a")
    assert (second["x-shop"], second["x-force-ip"]) == ("b", "203.0.113.9")
    names = [name.lower() for name in stub.requests[1].headers]
    assert names.count("content-type") == 1 and second["content-type"] == "text/plain"
