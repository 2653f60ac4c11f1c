"""A server that answers before it has read the whole request (a 413 for a body too large) and
closes: the kept-alive path reports that answer, as ``requests`` does, instead of the broken
pipe its sending meets (which would be retried, sending the whole body again)."""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.errors import ClientError, ConnectionFailed, InvalidData
from django_experience.api.http11 import Connection
from django_experience.api.retry import Deadline, RetryPolicy
from tests.api.certificates import make_certificates

POLICY = RetryPolicy(max_retries=2, backoff_base=0.01, backoff_max=0.02)
REFUSAL = json.dumps(
    {"data": {}, "error": {"code": "ERR_INVALID_DATA"}, "message": "too large"}
).encode()
ANSWER_413 = (
    b"HTTP/1.1 413 Payload Too Large\r\nContent-Type: application/json\r\n"
    b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(REFUSAL), REFUSAL)
)
# Far more than the socket buffers of both ends hold (the server's is kept small), so sending
# is still under way when the server closes.
BIG = 8 * 1024 * 1024


class EarlyAnswerServer:
    """Reads a request's head only, sends ``answer`` (maybe nothing) and closes with the body
    unread (so the kernel resets the connection)."""

    def __init__(self, answer: bytes, *, tls: ssl.SSLContext | None = None) -> None:
        self.answer = answer
        self.tls = tls
        self.connections = 0
        self._listener = socket.socket()
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen()
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            data = b""
            try:
                if self.tls is not None:
                    sock.settimeout(5)
                    sock = self.tls.wrap_socket(sock, server_side=True)
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                sock.sendall(self.answer)
                # Closing with the body unread resets the connection, and a reset drops what is
                # still in this side's send queue: let the answer leave first (a real server
                # lingers too), so only the client's half of the race is left to test.
                time.sleep(0.2)
            except OSError:
                return


@pytest.fixture
def early_413() -> Iterator[EarlyAnswerServer]:
    server = EarlyAnswerServer(ANSWER_413)
    yield server
    server.close()


def _big_body_client(url: str) -> ExperienceClient:
    """A client that sends :func:`_big_events` as one body (far larger than socket buffers,
    so the server's answer arrives while the body is being sent)."""
    return ExperienceClient(
        "org", base_url=url, timeout=5, retry_policy=POLICY, max_batch_bytes=2 * BIG
    )


def _big_events() -> list[dict[str, str]]:
    size = BIG // 200
    return [
        {"type": "track", "event": "x" * size, "anonymousId": f"a{i % 50}", "messageId": str(i)}
        for i in range(200)
    ]


def test_the_connection_returns_the_answer_sent_before_the_body_was_read(
    early_413: EarlyAnswerServer,
) -> None:
    connection = Connection("http", "127.0.0.1", early_413.port)
    response = connection.request(
        "POST", "/v2/x", headers={}, body=b"x" * BIG, deadline=Deadline(5)
    )
    assert (response.status, response.body) == (413, REFUSAL)
    assert connection.sock is None  # never reused: the request was not sent whole


def test_an_early_answer_whose_body_is_cut_off_still_gives_its_status() -> None:
    server = EarlyAnswerServer(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 500\r\n\r\n{")
    try:
        connection = Connection("http", "127.0.0.1", server.port)
        response = connection.request(
            "POST", "/v2/x", headers={}, body=b"x" * BIG, deadline=Deadline(5)
        )
    finally:
        server.close()
    assert response.status == 413 and connection.sock is None


def test_a_server_that_hangs_up_without_answering_is_a_connection_failure() -> None:
    server = EarlyAnswerServer(b"")
    try:
        connection = Connection("http", "127.0.0.1", server.port)
        with pytest.raises(ConnectionFailed, match="failed"):
            connection.request("POST", "/v2/x", headers={}, body=b"x" * BIG, deadline=Deadline(5))
    finally:
        server.close()
    assert connection.sock is None


@pytest.mark.parametrize("route", ["kept-alive", "requests"])
def test_an_early_413_is_the_callers_error_and_not_retried(
    early_413: EarlyAnswerServer, route: str
) -> None:
    session = None if route == "kept-alive" else requests.Session()
    client = ExperienceClient(
        "org", base_url=early_413.url, timeout=5, retry_policy=POLICY, session=session,
        max_batch_bytes=2 * BIG,
    )
    with client, pytest.raises(InvalidData) as caught:
        client.send_events(_big_events())
    assert (caught.value.status, caught.value.code) == (413, "ERR_INVALID_DATA")
    assert early_413.connections == 1


def test_an_update_begun_reports_the_early_answer_when_its_result_is_asked(
    early_413: EarlyAnswerServer,
) -> None:
    event = {
        "type": "track",
        "event": "big",
        "properties": {"blob": "x" * BIG},
        "anonymousId": "a1",
        "messageId": "m1",
    }
    with ExperienceClient("org", base_url=early_413.url, timeout=5, retry_policy=POLICY) as client:
        pending = client.begin_update_profile("p-1", [event])
        assert pending.send_error is None  # sending "succeeded": the answer came back
        with pytest.raises(InvalidData) as caught:
            pending.result()
    assert caught.value.status == 413 and early_413.connections == 1


def test_an_early_answer_cut_off_is_still_not_retried() -> None:
    server = EarlyAnswerServer(b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 500\r\n\r\n{")
    try:
        with (
            _big_body_client(server.url) as client,
            pytest.raises(ClientError) as caught,
        ):
            client.send_events(_big_events())
    finally:
        server.close()
    assert caught.value.status == 413 and server.connections == 1


def test_hanging_up_without_answering_is_retried() -> None:
    server = EarlyAnswerServer(b"")
    try:
        with (
            _big_body_client(server.url) as client,
            pytest.raises(ConnectionFailed),
        ):
            client.send_events(_big_events())
    finally:
        server.close()
    assert server.connections == 3


def test_an_early_413_over_tls_is_the_callers_error_and_not_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Over TLS the server's closing shows as an EOF "in violation of protocol" while sending.
    certificates = make_certificates(tmp_path)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certificates / "ca.pem"))  # the own session's
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    server = EarlyAnswerServer(ANSWER_413, tls=tls)
    try:
        with _big_body_client(server.url) as client:
            assert client._direct_route(client.session, client.url("/events"))
            with pytest.raises(InvalidData) as caught:
                client.send_events(_big_events())
    finally:
        server.close()
    assert caught.value.status == 413 and server.connections == 1
