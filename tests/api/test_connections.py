"""The kept-alive connections of the client's own session: reused, and replaced when the server
closed them while idle (without a retry being spent on it)."""

from __future__ import annotations

import fcntl
import gzip
import json
import resource
import socket
import ssl
import threading
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from django_experience.api import ExperienceClient, http11
from django_experience.api.connections import ConnectionPool, split_url
from django_experience.api.retry import Deadline
from tests.api.slow_server import read_request

ANSWER = json.dumps({"data": {"profiles": []}, "error": None}).encode()


class RawServer:
    """Answers each request with a fixed 200; counts connections; may hang up after answering
    (``closed`` is set once it has closed a connection)."""

    def __init__(self, *, hang_up: bool, gzip: bool = False) -> None:
        self.hang_up = hang_up
        self.gzip = gzip
        self.connections = 0
        self.requests = 0
        self.closed = threading.Event()
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            while True:
                try:
                    if not read_request(sock):
                        return
                except OSError:
                    return
                self.requests += 1
                body = gzip.compress(ANSWER) if self.gzip else ANSWER
                encoding = b"Content-Encoding: gzip\r\n" if self.gzip else b""
                sock.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%s"
                    b"Content-Length: %d\r\n\r\n%s" % (encoding, len(body), body)
                )
                if self.hang_up:
                    time.sleep(0.05)  # the answer is out; now close, as idle servers do
                    sock.close()
                    self.closed.set()
                    return

    def close(self) -> None:
        self._server.close()


@pytest.fixture
def keep_alive() -> Iterator[RawServer]:
    server = RawServer(hang_up=False)
    yield server
    server.close()


@pytest.fixture
def hanging_up() -> Iterator[RawServer]:
    server = RawServer(hang_up=True)
    yield server
    server.close()


def _client(server: RawServer) -> ExperienceClient:
    return ExperienceClient("org-1", base_url=f"http://127.0.0.1:{server.port}", timeout=2.0,
                            max_retries=0)


def test_calls_reuse_one_connection(keep_alive: RawServer) -> None:
    client = _client(keep_alive)
    for _ in range(5):
        client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
    assert keep_alive.requests == 5 and keep_alive.connections == 1


def test_a_connection_the_server_closed_is_replaced_without_a_retry(
    hanging_up: RawServer,
) -> None:
    client = _client(hanging_up)  # no retries: the second call must not need one
    client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
    assert hanging_up.closed.wait(5)  # the server has hung up the idle connection
    client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
    assert hanging_up.requests == 2 and hanging_up.connections == 2


HIGH_FD = 1100  # above what ``select`` takes (1024)


class _HighNumberingSocketModule(types.ModuleType):
    """The ``socket`` module as ``http11`` sees it, but each socket it opens is numbered
    ``HIGH_FD`` or more (everything else is the real module's)."""

    def __init__(self) -> None:
        super().__init__("socket")
        self.opened: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(socket, name)

    def socket(self, family: int = -1, type: int = -1, proto: int = -1) -> socket.socket:
        low = socket.socket(family, type, proto)
        try:
            # The lowest free number from HIGH_FD up, whatever holes there are below it.
            fd = fcntl.fcntl(low.fileno(), fcntl.F_DUPFD_CLOEXEC, HIGH_FD)
        finally:
            low.close()
        self.opened.append(fd)
        return socket.socket(family, type, proto, fileno=fd)


@pytest.fixture
def many_fds(monkeypatch: pytest.MonkeyPatch) -> Iterator[_HighNumberingSocketModule]:
    """The client's sockets numbered above 1024, above what ``select`` takes (as in a busy
    process).

    Not by filling every free number below: another thread's socket (a server's of an earlier
    test, one the garbage collector closes) may free a low number after that, and the client's
    socket took it (fd 18 on a busy machine). Its sockets are moved up as they are opened.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HIGH_FD + 100
    if soft != resource.RLIM_INFINITY and soft < wanted:
        if hard != resource.RLIM_INFINITY and hard < wanted:
            pytest.skip(f"at most {hard} open files allowed")
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    high_numbering = _HighNumberingSocketModule()
    monkeypatch.setattr(http11, "socket", high_numbering)
    try:
        yield high_numbering
    finally:
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_connections_numbered_above_1024_are_reused(
    keep_alive: RawServer, many_fds: _HighNumberingSocketModule
) -> None:
    client = _client(keep_alive)
    for _ in range(5):
        client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
    (idle,) = [c for connections in client._connections._idle.values() for c in connections]
    assert idle.sock is not None and idle.sock.fileno() >= 1024
    assert keep_alive.requests == 5 and keep_alive.connections == 1
    client.close()


def test_a_connection_numbered_above_1024_that_the_server_closed_is_replaced(
    hanging_up: RawServer, many_fds: _HighNumberingSocketModule
) -> None:
    client = _client(hanging_up)  # no retries: the second call must not need one
    client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
    assert hanging_up.closed.wait(5)  # the server has hung up the idle connection
    client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
    assert hanging_up.requests == 2 and hanging_up.connections == 2
    assert len(many_fds.opened) == 2 and min(many_fds.opened) >= 1024
    client.close()


def test_threads_share_the_idle_connections(keep_alive: RawServer) -> None:
    client = _client(keep_alive)
    errors: list[BaseException] = []

    def calls() -> None:
        try:
            for _ in range(20):
                client.upsert_profiles([{"anonymousId": "a", "type": "track", "event": "x"}])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=calls) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert errors == [] and keep_alive.requests == 80
    assert 1 <= keep_alive.connections <= 4  # never more than the calls at once
    client.close()


def test_a_thread_per_request_server_reuses_connections(keep_alive: RawServer) -> None:
    # runserver and other threading servers start a thread per request: the connection
    # outlives each of them.
    client = _client(keep_alive)
    for _ in range(10):
        thread = threading.Thread(
            target=client.upsert_profiles,
            args=([{"anonymousId": "a", "type": "track", "event": "x"}],),
        )
        thread.start()
        thread.join(timeout=10)
    assert keep_alive.requests == 10 and keep_alive.connections == 1


def test_idle_connections_are_bounded(keep_alive: RawServer) -> None:
    pool = ConnectionPool(max_idle=2)
    origin, _ = split_url(f"http://127.0.0.1:{keep_alive.port}/")
    taken = [pool.take(origin) for _ in range(4)]
    for connection in taken:
        connection.connect(Deadline(1.0))
        pool.give_back(origin, connection)
    assert sum(connection.sock is not None for connection in taken) == 2  # the rest closed
    pool.close()
    assert all(connection.sock is None for connection in taken)


@pytest.mark.parametrize(
    ("url", "origin", "target"),
    [
        ("http://127.0.0.1:8765/v2/x", ("http", "127.0.0.1", 8765), "/v2/x"),
        ("https://experience.ninetailed.co/v2/x", ("https", "experience.ninetailed.co", 443),
         "/v2/x"),
        ("http://host", ("http", "host", 80), "/"),
        ("http://[::1]:9000/p", ("http", "::1", 9000), "/p"),
        ("http://[::1]/p", ("http", "::1", 80), "/p"),
    ],
)
def test_split_url(url: str, origin: tuple[str, str, int], target: str) -> None:
    assert split_url(url) == (origin, target)


def test_gzip_answers_are_decoded() -> None:
    server = RawServer(hang_up=False, gzip=True)
    try:
        assert _client(server).upsert_profiles(
            [{"anonymousId": "a", "type": "track", "event": "x"}]
        ) == []
    finally:
        server.close()


def test_the_tls_context_is_built_for_the_first_https_connection_only() -> None:
    # Loading the CA bundle costs tens of milliseconds: a client of an http:// URL (the
    # emulator) must not pay it, one of an https:// URL pays it once.
    made: list[ssl.SSLContext] = []

    def tls() -> ssl.SSLContext:
        made.append(ssl.create_default_context())
        return made[-1]

    pool = ConnectionPool(tls)
    pool.take(("http", "127.0.0.1", 80))  # connections open on first use: no I/O
    assert made == []
    first = pool.take(("https", "experience.example", 443))
    second = pool.take(("https", "experience.example", 443))
    assert len(made) == 1
    assert first.tls is made[0] and second.tls is made[0]
