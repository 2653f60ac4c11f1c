"""Kept-alive ``http.client`` connections for the client's own session: the fast path.

A call to the Experience API sits on the request path of every personalized page, so the HTTP
stack's own cost counts. ``requests`` spends several loopback round trips' worth of CPU per call
(preparing the request, cookie jars, hooks, pool bookkeeping); the standard library's
``http.client`` on a kept-alive socket costs little more than the round trip itself. This
module keeps a pool of idle connections per origin (each used by one thread at a time, as
``http.client`` is not thread-safe) and sends one request within a
:class:`~django_experience.api.retry.Deadline`, raising the same errors as
:func:`django_experience.api.transport.send`.

The deadline is a hard bound: a socket timeout applies to each socket operation, so every
operation (connecting to each address, the TLS handshake, sending, and every read of the
status line, the headers and the body) is given only what is left of the deadline, and none
starts once it has passed. A server that trickles its answer a byte at a time cannot stretch
a call. (Resolving the host name is the one step no socket timeout covers: ``getaddrinfo``
blocks for as long as the system resolver takes.)
"""

from __future__ import annotations

import functools
import http.client
import io
import os
import select
import socket
import ssl
import threading
import types
import zlib
from collections.abc import Callable, Mapping
from typing import Any, cast
from urllib.parse import urlencode

import urllib3

from django_experience.api.errors import ConnectionFailed, MalformedResponse, RequestTimeout
from django_experience.api.retry import Deadline
from django_experience.api.transport import MAX_BODY_BYTES, RawAnswer, read_body, time_left

Origin = tuple[str, str, int]  # scheme, host, port


def split_url(url: str) -> tuple[Origin, str]:
    """``("https", "host", 443), "/path?query"`` from an absolute http(s) URL."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    host, colon, port = authority.rpartition(":")
    if not colon or "]" in port:  # no port (or only an IPv6 literal's colons)
        host, port = authority, ""
    default = 443 if scheme == "https" else 80
    return (scheme, host.strip("[]"), int(port) if port else default), slash + path or "/"


_NO_HEADERS: Mapping[str, Any] = types.MappingProxyType({})


class _Budget:
    """The deadline of the request a connection is carrying (shared with its answers' readers).

    A holder of its own, not the connection, so that an answer does not refer back to the
    connection that refers to it (no reference cycle to collect per call).
    """

    __slots__ = ("deadline",)

    def __init__(self) -> None:
        self.deadline: Deadline | None = None

    def left(self) -> float | None:
        """Seconds for the next socket operation; TimeoutError once none are left."""
        deadline = self.deadline
        if deadline is None:
            return None  # not within a call: the connection's own timeout applies
        remaining = deadline.remaining()
        if remaining <= 0:
            raise TimeoutError(f"the time budget of {deadline.budget:g}s is spent")
        return remaining


class _DeadlineReader(io.RawIOBase):
    """The socket's raw reader, each read given only what is left of the deadline."""

    def __init__(self, sock: socket.socket, budget: _Budget) -> None:
        super().__init__()
        self._socket = sock
        self._raw = sock.makefile("rb", buffering=0)  # keeps the socket open while reading
        self._budget = budget

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        seconds = self._budget.left()
        if seconds is not None:
            self._socket.settimeout(seconds)
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _ReadSide:
    """What ``http.client.HTTPResponse`` is given instead of the socket: only ``makefile``."""

    __slots__ = ("_budget", "_sock")

    def __init__(self, sock: socket.socket, budget: _Budget) -> None:
        self._sock = sock
        self._budget = budget

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self._sock, self._budget))


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(
        self,
        sock: socket.socket,
        debuglevel: int = 0,
        method: str | None = None,
        url: str | None = None,
        *,
        budget: _Budget,
    ) -> None:
        super().__init__(
            cast("socket.socket", _ReadSide(sock, budget)), debuglevel, method, url
        )


class DeadlineConnection(http.client.HTTPConnection):
    """An ``HTTPConnection`` whose socket operations end at :attr:`deadline`.

    Set :attr:`deadline` before each request. Connecting tries each address with what is left;
    a request's line, headers and body go out in one ``sendall`` (``http.client`` sends the
    head and the body separately: two segments where one does); TCP_NODELAY is set.
    """

    def __init__(self, host: str, port: int | None = None, **kwargs: Any) -> None:
        super().__init__(host, port, **kwargs)
        self._budget = _Budget()
        self._pending: list[bytes] | None = None
        self._create_connection = self._open
        self.response_class = cast(
            "type[http.client.HTTPResponse]",
            functools.partial(_DeadlineResponse, budget=self._budget),
        )

    @property
    def deadline(self) -> Deadline | None:
        return self._budget.deadline

    @deadline.setter
    def deadline(self, deadline: Deadline | None) -> None:
        self._budget.deadline = deadline

    def _open(
        self,
        address: tuple[str, int],
        timeout: float | None = None,
        source_address: tuple[str, int] | None = None,
    ) -> socket.socket:
        """``socket.create_connection``, each address given only what is left of the deadline."""
        host, port = address
        error: OSError | None = None
        for family, kind, proto, _, sockaddr in socket.getaddrinfo(
            host, port, 0, socket.SOCK_STREAM
        ):
            sock = socket.socket(family, kind, proto)
            try:
                seconds = self._budget.left()
                if seconds is not None:
                    sock.settimeout(seconds)
                elif timeout is None or isinstance(timeout, int | float):
                    sock.settimeout(timeout)  # else http.client's "default timeout" marker
                # http.client sets it too once connected; before connecting it holds for sure.
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if source_address:
                    sock.bind(source_address)
                sock.connect(sockaddr)
                seconds = self._budget.left()  # what is left for the TLS handshake, if any
                if seconds is not None:
                    sock.settimeout(seconds)
            except TimeoutError:
                sock.close()
                raise  # the whole budget went on this address: none is left for the next
            except OSError as exc:
                sock.close()
                error = exc  # refused or unreachable: try the next address
            else:
                return sock
        raise error or OSError(f"getaddrinfo returned no address for {host}")

    def request(
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Mapping[str, Any] = _NO_HEADERS,
        *,
        encode_chunked: bool = False,
    ) -> None:
        """Send a request in one write (see :meth:`send`)."""
        self._pending = []
        try:
            super().request(method, url, body, headers, encode_chunked=encode_chunked)
        except BaseException:
            self._pending = None
            raise
        self._flush()

    def send(self, data: Any) -> None:
        """Buffer what :meth:`request` sends; send the rest within the deadline."""
        pending = self._pending
        if pending is not None:
            if isinstance(data, bytes | bytearray | memoryview):
                pending.append(bytes(data))
                return
            self._flush()  # a file or an iterable body: what was buffered goes first
        if self.sock is None and self.auto_open:
            self.connect()
        seconds = self._budget.left()
        if seconds is not None and self.sock is not None:
            self.sock.settimeout(seconds)
        super().send(data)

    def _flush(self) -> None:
        pending, self._pending = self._pending, None
        if pending:
            self.send(b"".join(pending))


class DeadlineHTTPSConnection(DeadlineConnection, http.client.HTTPSConnection):
    """:class:`DeadlineConnection` over TLS (the handshake gets what connecting left)."""


class ConnectionPool:
    """Idle kept-alive connections per origin, shared by all threads.

    A call takes an idle connection (or opens one) and gives it back when its answer was read
    in full; a connection is never used by two threads at once (``http.client`` is not
    thread-safe). Thread-per-request servers reuse connections as well as thread pools do.
    At most ``max_idle`` idle connections are kept per origin; a forked child starts afresh.
    """

    def __init__(
        self, tls: Callable[[], ssl.SSLContext] = ssl.create_default_context, *, max_idle: int = 32
    ) -> None:
        self._make_tls = tls  # called on the first HTTPS connection: loading CAs takes a while
        self._tls: ssl.SSLContext | None = None
        self.max_idle = max_idle
        self._idle: dict[Origin, list[DeadlineConnection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self, origin: Origin, deadline: Deadline) -> DeadlineConnection:
        """An idle connection to ``origin`` still open, or a new one (connected on first use),
        its socket operations bounded by ``deadline``."""
        with self._lock:
            if self._pid != os.getpid():  # never share the parent's sockets
                self._idle, self._lock, self._pid = {}, threading.Lock(), os.getpid()
            idle = self._idle.get(origin)
            connection = idle.pop() if idle else None
        while connection is not None and _dropped(connection):
            connection.close()  # the server closed it while idle: try the next one
            with self._lock:
                idle = self._idle.get(origin)
                connection = idle.pop() if idle else None
        if connection is None:
            scheme, host, port = origin
            if scheme == "https":
                if self._tls is None:
                    self._tls = self._make_tls()
                connection = DeadlineHTTPSConnection(host, port, context=self._tls)
            else:
                connection = DeadlineConnection(host, port)
        connection.deadline = deadline
        return connection

    def give_back(self, origin: Origin, connection: DeadlineConnection) -> None:
        """Keep a connection whose answer was read in full for the next call."""
        if connection.sock is None:
            return
        with self._lock:
            if self._pid == os.getpid():
                idle = self._idle.setdefault(origin, [])
                if len(idle) < self.max_idle:
                    idle.append(connection)
                    return
        connection.close()

    def close(self) -> None:
        """Close the idle connections (one in use is closed when it is given back)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for connections in idle.values():
            for connection in connections:
                connection.close()


def _dropped(connection: DeadlineConnection) -> bool:
    """Whether an idle kept-alive socket was closed by the server (readable means EOF here)."""
    sock = connection.sock
    if sock is None:
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


def send_kept_alive(
    pool: ConnectionPool,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> RawAnswer:
    """One request on a kept-alive connection of ``pool``, within ``deadline``."""
    time_left(deadline, method, url)
    origin, target = split_url(url)
    if params:
        target = f"{target}?{urlencode(params)}"
    what = f"{method} {url}"
    connection = pool.take(origin, deadline)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        payload = read_body(response, deadline, what)
        response.close()  # read to the end: the connection is free for the next request
    except TimeoutError as exc:  # socket.timeout, or the budget spent between two operations
        connection.close()
        raise RequestTimeout(
            f"no answer to {what} within the time budget of {deadline.budget:g}s"
        ) from exc
    except (http.client.HTTPException, OSError) as exc:  # refused, unresolvable, dropped, TLS
        connection.close()
        raise ConnectionFailed(f"connection to {url} failed: {exc}") from exc
    except BaseException:
        connection.close()  # a half-used connection must not be used again
        raise
    if response.will_close:
        connection.close()
    else:
        pool.give_back(origin, connection)
    headers_read = urllib3.HTTPHeaderDict(response.getheaders())  # what requests answers too
    encoding = headers_read.get("Content-Encoding", "").strip().lower()
    if encoding in ("gzip", "deflate") and payload:
        payload = _decompress(payload, encoding, what)
    return RawAnswer(response.status, headers_read, payload)


def _decompress(payload: bytes, encoding: str, what: str) -> bytes:
    wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
    try:
        inflater = zlib.decompressobj(wbits)
        data = inflater.decompress(payload, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise MalformedResponse(f"the answer to {what} could not be decoded: {exc}") from exc
    if len(data) > MAX_BODY_BYTES:
        raise MalformedResponse(f"the answer to {what} is larger than {MAX_BODY_BYTES} bytes")
    return data


__all__ = [
    "ConnectionPool",
    "DeadlineConnection",
    "DeadlineHTTPSConnection",
    "send_kept_alive",
    "split_url",
]
