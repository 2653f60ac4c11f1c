"""The time budget is a hard bound: each socket operation gets only what is left of it.

A socket timeout bounds one operation, so a server that sends its status line and headers one
byte at a time, just under it, could hold a call for as long as it likes; and connecting and
waiting for the answer each getting the whole budget made a call last up to twice as long.
These tests hold real servers on loopback that misbehave in each of those ways.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from django_experience.api import ExperienceClient
from django_experience.api.errors import RequestTimeout
from django_experience.api.http11 import Connection
from django_experience.api.retry import Deadline, RetryPolicy
from tests.api.certificates import make_certificates
from tests.api.slow_server import SlowAnswer, SlowServer, elapsed_since, read_request

BUDGET = 0.3
MARGIN = 0.3  # a busy 2-core machine's scheduling; the budget itself is what is asserted
NO_RETRIES = RetryPolicy(max_retries=0)


def make_client(
    url: str, *, timeout: float = BUDGET, session: requests.Session | None = None
) -> ExperienceClient:
    return ExperienceClient(
        "org-1", base_url=url, timeout=timeout, retry_policy=NO_RETRIES, session=session
    )


def assert_times_out_within_budget(client: ExperienceClient, budget: float = BUDGET) -> None:
    start = time.monotonic()
    with pytest.raises(RequestTimeout):
        client.get_profile("p-1")
    assert elapsed_since(start) < budget + MARGIN


@pytest.fixture(params=["kept-alive", "requests"])
def transport(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def session_for(transport: str) -> requests.Session | None:
    """``None``: the client's own kept-alive path; a session of the caller's: ``requests``."""
    return None if transport == "kept-alive" else requests.Session()


# The kept-alive path: every read of the head gets only what is left ---------------------------


def test_a_trickled_status_line_and_headers_end_within_the_budget() -> None:
    # About 70 bytes of head, one every 50 ms: 3.5 s in all, each read far under the budget.
    with SlowServer(SlowAnswer(head_byte_interval=0.05)) as server:
        assert_times_out_within_budget(make_client(server.url))


class KeepAliveSlowServer(SlowServer):
    """A ``SlowServer`` that answers successive requests on one connection (each as its
    ``answer`` is when the request comes) instead of closing it after the first: a client
    that reuses its idle connection always finds it open, never reset by a close racing it.
    """

    def __init__(self, answer: SlowAnswer) -> None:
        super().__init__(answer)
        self.requests_read = 0

    def __enter__(self) -> KeepAliveSlowServer:
        super().__enter__()
        return self

    @property
    def connections(self) -> int:
        return self.requests  # what ``SlowServer`` counts: connections accepted

    def _answer(self, connection: socket.socket) -> None:
        with connection:
            try:
                while read_request(connection):  # False: the client hung up
                    self.requests_read += 1
                    if not self._send_answer(connection):
                        return
            except OSError:
                return  # the client gave up and closed the connection (or stayed idle 5 s)


def test_a_trickled_head_on_a_kept_alive_connection_ends_within_the_budget() -> None:
    # The connection was opened by an earlier call: its deadline must not carry over.
    answer = SlowAnswer()
    with KeepAliveSlowServer(answer) as server:
        client = make_client(server.url, timeout=2.0)
        assert client.get_profile("p-1").profile.id == "p-1"
        answer.head_byte_interval = 0.05
        start = time.monotonic()
        with pytest.raises(RequestTimeout):
            client.get_profile("p-1", timeout=BUDGET)
        assert elapsed_since(start) < BUDGET + MARGIN
        # The second call really went out on the first call's connection.
        assert server.connections == 1 and server.requests_read == 2


def test_a_head_that_stalls_after_a_late_start_ends_within_the_budget() -> None:
    # 0.2 s of silence, then the head trickles: the wait and the reads share one budget.
    with SlowServer(SlowAnswer(header_delay=0.2, head_byte_interval=0.05)) as server:
        assert_times_out_within_budget(make_client(server.url))


def test_a_trickled_head_within_the_budget_is_read() -> None:
    with SlowServer(SlowAnswer(head_byte_interval=0.001)) as server:
        assert make_client(server.url, timeout=5.0).get_profile("p-1").profile.id == "p-1"


# Both paths --------------------------------------------------------------------------------


def test_late_headers_end_within_the_budget(transport: str) -> None:
    with SlowServer(SlowAnswer(header_delay=3.0)) as server:
        assert_times_out_within_budget(make_client(server.url, session=session_for(transport)))


def test_a_trickled_body_ends_within_the_budget(transport: str) -> None:
    with SlowServer(SlowAnswer(byte_interval=0.05)) as server:
        assert_times_out_within_budget(make_client(server.url, session=session_for(transport)))


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A loopback address whose listener's backlog is full: connecting to it hangs."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers: list[socket.socket] = []
    try:
        for _ in range(8):
            filler = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            filler.settimeout(0.2)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                filler.close()
                break
            fillers.append(filler)
        else:
            pytest.skip("this system accepts connections beyond a full backlog")
        yield f"http://127.0.0.1:{port}"
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_connecting_to_a_black_hole_ends_within_the_budget(
    transport: str, black_hole: str
) -> None:
    assert_times_out_within_budget(make_client(black_hole, session=session_for(transport)))


class SilentServer:
    """Accepts connections and never says a word (a TLS handshake waits for ever)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._listener.close()
        for connection in self._held:
            connection.close()


def test_a_stalled_tls_handshake_ends_within_the_budget(
    transport: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both paths trust a one-certificate bundle: loading the default one (certifi's) costs
    # 0.1-0.3 s on a busy machine and is not the wait under test. urllib3 loads it for each
    # new connection, after the connect timeout was taken from the deadline; the kept-alive
    # path for the pool's first HTTPS connection.
    ca_bundle = str(make_certificates(tmp_path) / "ca.pem")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_bundle)  # the client's own session's
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    session = session_for(transport)
    if session is not None:
        session.verify = ca_bundle
    server = SilentServer()
    try:
        client = make_client(f"https://127.0.0.1:{server.port}", session=session)
        assert_times_out_within_budget(client)
    finally:
        server.close()


# How the request goes out ------------------------------------------------------------------


class RecordingSocket:
    """A real socket that records each ``sendall`` (everything else passes through)."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: Any) -> None:
        self.sent.append(bytes(data))
        self._sock.sendall(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def test_request_line_headers_and_body_go_out_in_one_write() -> None:
    with SlowServer(SlowAnswer()) as server:
        host, port = server.url.removeprefix("http://").split(":")
        connection = Connection("http", host, int(port))
        connection.connect(Deadline(2.0))
        assert connection.sock is not None
        recording = RecordingSocket(connection.sock)
        connection.sock = recording  # type: ignore[assignment]
        body = b'{"events": []}'
        response = connection.request("POST", "/x", body=body, deadline=Deadline(2.0),
                                      headers={"Content-Type": "text/plain"})
        assert response.status == 200 and response.body
        assert len(recording.sent) == 1
        assert recording.sent[0].startswith(b"POST /x HTTP/1.1\r\n")
        assert recording.sent[0].endswith(b"\r\n\r\n" + body)
        connection.close()


def test_kept_alive_connections_set_tcp_nodelay() -> None:
    with SlowServer(SlowAnswer()) as server:
        client = make_client(server.url, timeout=2.0)
        client.get_profile("p-1")
        idle = [c for connections in client._connections._idle.values() for c in connections]
        assert len(idle) == 1 and idle[0].sock is not None
        assert idle[0].sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)


def test_a_server_that_hangs_up_after_answering_with_connection_close() -> None:
    # The answer outlives its connection (closed on "Connection: close").
    def serve(listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection:
            read_request(connection)
            body = b'{"data": {}, "error": null}'
            connection.sendall(
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
                % (len(body), body)
            )

    with socket.create_server(("127.0.0.1", 0)) as listener:
        threading.Thread(target=serve, args=(listener,), daemon=True).start()
        port = listener.getsockname()[1]
        host_port = f"http://127.0.0.1:{port}"
        client = make_client(host_port, timeout=2.0)
        client.delete_profile("p-1")  # read in full although the connection was closed first
        assert client._connections._idle.get(("http", "127.0.0.1", port), []) == []
