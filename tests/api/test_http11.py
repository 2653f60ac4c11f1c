"""The client's own HTTP/1.1 connection against a loopback server that writes scripted bytes."""

from __future__ import annotations

import gzip
import socket
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from django_experience.api import ExperienceClient
from django_experience.api.errors import ConnectionFailed, MalformedResponse, RequestTimeout
from django_experience.api.http11 import Connection, Headers, encode_headers
from django_experience.api.retry import Deadline, RetryPolicy

# What a script does with one request: (bytes to send or a pause in seconds) ..., then whether
# to hang up.
Step = bytes | float
Script = Callable[[bytes], tuple[list[Step], bool]]


class ScriptedServer:
    """Reads each request whole, then plays the script's answer for it."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.requests: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
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
        buffer = b""
        with sock:
            while not self._stop.is_set():
                try:
                    while b"\r\n\r\n" not in buffer:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buffer) < length:
                        chunk = sock.recv(65536)
                        if not chunk:
                            return  # the client hung up in the middle of its body
                        buffer += chunk
                    request, buffer = head + b"\r\n\r\n" + buffer[:length], buffer[length:]
                    self.requests.append(request)
                    steps, hang_up = self.script(request)
                    for step in steps:
                        if isinstance(step, float):
                            if self._stop.wait(step):
                                return
                        else:
                            sock.sendall(step)
                    if hang_up:
                        return
                except OSError:
                    return


@pytest.fixture
def serve() -> Iterator[Callable[[Script], ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script) -> ScriptedServer:
        server = ScriptedServer(script)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def _answer(*steps: Step, hang_up: bool = False) -> Script:
    return lambda request: (list(steps), hang_up)


def _ok(body: bytes, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n%s" % (len(body), extra, body)


def _connect(server: ScriptedServer) -> Connection:
    return Connection("http", "127.0.0.1", server.port)


def _get(connection: Connection, budget: float = 2.0, method: str = "GET",
         body: bytes | None = None) -> tuple[int, Headers, bytes, bool]:
    response = connection.request(method, "/v2/x?y=1", headers={"Accept": "application/json"},
                                  body=body, deadline=Deadline(budget))
    return response.status, response.headers, response.body, response.will_close


def test_the_request_carries_host_length_and_body(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(_ok(b"{}")))
    connection = _connect(server)
    _get(connection, method="POST", body=b'{"events":[]}')
    request = server.requests[0]
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v2/x?y=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Content-Length: 13" in lines and b"Accept: application/json" in lines
    assert body == b'{"events":[]}'


def test_a_kept_alive_connection_is_reused(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(_ok(b"one")))
    connection = _connect(server)
    assert _get(connection)[2] == b"one"
    assert _get(connection)[2] == b"one"
    assert server.connections == 1 and len(server.requests) == 2


def test_headers_are_case_insensitive_and_repeated_ones_joined(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 2\r\nX-Many: a\r\nx-many: b\r\n"
        b"X-Folded: first\r\n  second\r\nContent-Length: 0\r\n\r\n"))
    status, headers, body, _ = _get(_connect(server))
    assert (status, body) == (429, b"")
    assert headers["retry-after"] == "2" and headers.get("RETRY-AFTER") == "2"
    assert headers["X-Many"] == "a, b"
    assert headers["x-folded"] == "first second"
    assert "content-length" in headers and headers.get("missing") is None
    assert set(headers) == {"Retry-After", "X-Many", "X-Folded", "Content-Length"}


def test_a_chunked_body_with_extensions_and_trailers(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"4;ext=1\r\nWiki\r\n", 0.01, b"6\r\npedia \r\n", b"E\r\nin \r\n\r\nchunks.\r\n",
        b"0\r\nX-Trailer: t\r\n\r\n"))
    connection = _connect(server)
    status, _, body, will_close = _get(connection)
    assert (status, body, will_close) == (200, b"Wikipedia in \r\n\r\nchunks.", False)
    _get(connection)  # the connection is clean for the next request
    assert server.connections == 1


def test_interim_answers_are_skipped(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n"
                           b"Link: </a>\r\n\r\n" + _ok(b"real")))
    assert _get(_connect(server))[::2] == (200, b"real")


def test_a_body_framed_by_the_end_of_the_connection(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(b"HTTP/1.1 200 OK\r\n\r\nuntil", 0.01, b" the end", hang_up=True))
    connection = _connect(server)
    assert _get(connection)[2:] == (b"until the end", True)
    assert connection.sock is None


@pytest.mark.parametrize(("answer", "closes"), [
    (_ok(b"x", b"Connection: close\r\n"), True),
    (b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", True),
    (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\nx", False),
])
def test_connection_close_and_http_1_0(serve: Callable[[Script], ScriptedServer],
                                       answer: bytes, closes: bool) -> None:
    server = serve(_answer(answer, hang_up=closes))
    connection = _connect(server)
    assert _get(connection)[2:] == (b"x", closes)
    assert (connection.sock is None) is closes


def test_head_and_no_content_answers_have_no_body(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(lambda request: (
        [b"HTTP/1.1 204 No Content\r\n\r\n" if request.startswith(b"GET")
         else b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n"], False))
    connection = _connect(server)
    assert _get(connection)[::2] == (204, b"")
    assert _get(connection, method="HEAD")[::2] == (200, b"")
    assert _get(connection)[::2] == (204, b"")  # nothing was left unread in between


def test_answers_that_are_not_http_break_the_connection(
        serve: Callable[[Script], ScriptedServer]) -> None:
    for answer in (b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 abc OK\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        server = serve(_answer(answer))
        connection = _connect(server)
        with pytest.raises(ConnectionFailed, match=r"not HTTP/1\.1"):
            _get(connection)
        assert connection.sock is None


@pytest.mark.parametrize("answer", [
    b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}",  # "2" as a superscript
    b"HTTP/1.1 200 OK\r\nContent-Length: 1\xb9\r\n\r\n{}",
    b"HTTP/1.1 \xb200 OK\r\nContent-Length: 2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\n{}",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1_0\r\n" + b"x" * 16,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n+2\r\n{}\r\n0\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n\r\n",
])
def test_numbers_in_anything_but_ascii_digits_are_not_http(
        serve: Callable[[Script], ScriptedServer], answer: bytes) -> None:
    server = serve(_answer(answer))
    connection = _connect(server)
    with pytest.raises(ConnectionFailed, match=r"not HTTP/1\.1"):
        _get(connection)
    assert connection.sock is None


def test_the_client_reports_a_non_ascii_content_length_as_a_connection_failure(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n{}"))
    client = ExperienceClient("org", base_url=f"http://127.0.0.1:{server.port}", timeout=2,
                              retry_policy=RetryPolicy(max_retries=0))
    with client, pytest.raises(ConnectionFailed, match="invalid Content-Length"):
        client.get_profile("p-1")


def test_a_connection_closed_early_is_a_connection_failure(
        serve: Callable[[Script], ScriptedServer]) -> None:
    for answer, message in ((b"", "without answering"),
                            (b"HTTP/1.1 200 OK\r\nContent-Le", "middle of the headers"),
                            (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", "3 of 10")):
        server = serve(_answer(answer, hang_up=True))
        with pytest.raises(ConnectionFailed, match=message):
            _get(_connect(server))


def test_refused_connections_fail_fast() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    connection = Connection("http", "127.0.0.1", port)
    with pytest.raises(ConnectionFailed):
        connection.request("GET", "/", headers={}, body=None, deadline=Deadline(2))


HEAD = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


@pytest.mark.parametrize("steps", [
    [1.5, _ok(b"late")],  # headers that never come in time
    [step for byte in HEAD for step in (bytes([byte]), 0.05)],  # a head trickled byte by byte
    [b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"] + [b"x", 0.05] * 30,  # trickled body
    [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"] + [b"1\r\nx\r\n", 0.05] * 30,
])
def test_every_read_shares_one_budget(serve: Callable[[Script], ScriptedServer],
                                      steps: list[Step]) -> None:
    # Each answer takes 1.5 s or more, every read coming well within a per-read timeout.
    server = serve(_answer(*steps))
    connection = _connect(server)
    started = time.monotonic()
    with pytest.raises(RequestTimeout, match=r"time budget of 0\.3s"):
        _get(connection, budget=0.3)
    assert time.monotonic() - started < 0.9  # a loaded machine's margin, far below 1.5 s
    assert connection.sock is None


def test_a_spent_budget_sends_nothing(serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(_ok(b"x")))
    with pytest.raises(RequestTimeout):
        _get(_connect(server), budget=0.0)
    assert server.requests == []


def test_bodies_larger_than_accepted_are_refused(
        serve: Callable[[Script], ScriptedServer]) -> None:
    big = b"x" * 2048
    for answer in (_ok(big), b"HTTP/1.1 200 OK\r\n\r\n" + big,
                   b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n" + big):
        server = serve(_answer(answer, hang_up=True))
        connection = Connection("http", "127.0.0.1", server.port, max_body=1024)
        with pytest.raises(MalformedResponse, match="larger than 1024"):
            _get(connection)
        assert connection.sock is None


def test_headers_larger_than_accepted_are_refused(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"y" * 70000 + b"\r\n\r\n"))
    with pytest.raises(ConnectionFailed, match="exceed"):
        _get(_connect(server))


def test_compressed_bodies_are_returned_as_sent(
        serve: Callable[[Script], ScriptedServer]) -> None:
    packed = gzip.compress(b'{"data": 1}')
    server = serve(_answer(_ok(packed, b"Content-Encoding: gzip\r\n")))
    _, headers, body, _ = _get(_connect(server))
    assert headers["content-encoding"] == "gzip" and gzip.decompress(body) == b'{"data": 1}'


def test_header_injection_is_refused_before_sending(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(_ok(b"x")))
    connection = _connect(server)
    with pytest.raises(ValueError, match="invalid HTTP header"):
        connection.request("GET", "/", headers={"X-Evil": "a\r\nInjected: 1"}, body=None,
                           deadline=Deadline(1))
    assert server.requests == []


def test_headers_encoded_once_send_the_same_request(
        serve: Callable[[Script], ScriptedServer]) -> None:
    server = serve(_answer(_ok(b"{}")))
    connection = _connect(server)
    headers = {"Accept": "application/json", "X-Site": "shop", "Host": "elsewhere",
               "Content-Length": "99", "Transfer-Encoding": "chunked"}
    for given in (headers, encode_headers(headers)):
        connection.request("POST", "/v2/x", headers=given, body=b'{"a":1}', deadline=Deadline(2))
    by_mapping, by_bytes = server.requests
    assert by_bytes == by_mapping
    assert by_mapping.split(b"\r\n")[:5] == [
        b"POST /v2/x HTTP/1.1", f"Host: 127.0.0.1:{server.port}".encode(),
        b"Accept: application/json", b"X-Site: shop", b"Content-Length: 7"]
    with pytest.raises(ValueError, match="invalid HTTP header"):
        encode_headers({"X-Evil": "a\r\nInjected: 1"})


def test_https_needs_a_tls_context() -> None:
    with pytest.raises(ValueError, match="TLS context"):
        Connection("https", "example.invalid", 443)


def test_a_switched_protocol_answer_closes_the_connection(
        serve: Callable[[Script], ScriptedServer]) -> None:
    # After 101 the connection speaks another protocol: a request sent on it next would be
    # read as that protocol's data, so it is never reused (even without Connection: close).
    server = serve(_answer(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"))
    connection = _connect(server)
    status, _, body, will_close = _get(connection)
    assert (status, body, will_close) == (101, b"", True)
    assert connection.sock is None


@pytest.mark.parametrize("chunked", [False, True])
def test_a_large_body_in_many_pieces_arrives_whole(
        serve: Callable[[Script], ScriptedServer], chunked: bool) -> None:
    body = bytes(range(256)) * (12 * 4096)  # 12 MiB, under the 16 MiB the client accepts
    if chunked:
        framed = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece)
                          for piece in (body[i:i + 100_000] for i in range(0, len(body), 100_000)))
        answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n"
    else:
        answer = _ok(body)
    # Written in pieces with pauses, so that the client reads them one at a time; the next
    # answer follows on the same connection.
    pieces: list[Step] = []
    for start in range(0, len(answer), 1 << 20):
        pieces += [answer[start:start + (1 << 20)], 0.001]
    server = serve(lambda request: (pieces, False) if len(server.requests) == 1
                   else ([_ok(b"next")], False))
    connection = _connect(server)
    assert _get(connection, budget=10.0)[2] == body
    assert _get(connection)[2] == b"next"
    assert server.connections == 1
