"""Kept-alive connections for the client's own session: the fast path.

A call to the Experience API sits on the request path of every personalized page, so the HTTP
stack's own cost counts. ``requests`` spends several loopback round trips' worth of CPU per call
(preparing the request, cookie jars, hooks, pool bookkeeping), and even ``http.client`` costs
several times the round trip itself in Python work. This module keeps a pool of idle
:class:`~django_experience.api.http11.Connection` objects per origin (each used by one thread at
a time) and sends one request within a :class:`~django_experience.api.retry.Deadline`, raising
the same errors as :func:`django_experience.api.transport.send`.

The deadline is a hard bound: every socket operation (connecting to each address, the TLS
handshake, sending, every read of the status line, the headers and the body) is given only what
is left of it, and none starts once it has passed, so a server trickling its answer a byte at a
time cannot stretch a call. Resolving the host name is bounded by it too (``resolver``).
"""

from __future__ import annotations

import os
import select
import ssl
import threading
import zlib
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

from django_experience.api.errors import MalformedResponse
from django_experience.api.http11 import Connection
from django_experience.api.retry import Deadline
from django_experience.api.transport import (
    MAX_BODY_BYTES,
    RawAnswer,
    redact_credentials,
    time_left,
)

Origin = tuple[str, str, int]  # scheme, host, port


def split_url(url: str) -> tuple[Origin, str]:
    """``("https", "host", 443), "/path?query"`` from an absolute http(s) URL (user
    information, ``user:password@``, left out: this path sends none)."""
    scheme, _, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    authority = authority.rpartition("@")[2]
    host, colon, port = authority.rpartition(":")
    if not colon or "]" in port:  # no port (or only an IPv6 literal's colons)
        host, port = authority, ""
    default = 443 if scheme == "https" else 80
    return (scheme, host.strip("[]"), int(port) if port else default), slash + path or "/"


class ConnectionPool:
    """Idle kept-alive connections per origin, shared by all threads.

    A call takes an idle connection (or opens one) and gives it back when its answer was read
    in full; a connection is never used by two threads at once. Thread-per-request servers
    reuse connections as well as thread pools do. At most ``max_idle`` idle connections are
    kept per origin; a forked child starts afresh.
    """

    def __init__(
        self, tls: Callable[[], ssl.SSLContext] = ssl.create_default_context, *, max_idle: int = 32
    ) -> None:
        self._make_tls = tls  # called on the first HTTPS connection: loading CAs takes a while
        self._tls: ssl.SSLContext | None = None
        self.max_idle = max_idle
        self._idle: dict[Origin, list[Connection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self, origin: Origin) -> Connection:
        """An idle connection to ``origin`` still open, or a new one (connected on first use)."""
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
            if scheme == "https" and self._tls is None:
                self._tls = self._make_tls()
            connection = Connection(scheme, host, port, tls=self._tls, max_body=MAX_BODY_BYTES)
        return connection

    def give_back(self, origin: Origin, connection: Connection) -> None:
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


def _dropped(connection: Connection) -> bool:
    """Whether an idle kept-alive socket was closed by the server (readable means EOF here).

    ``poll`` where there is one: ``select`` takes no descriptor of 1024 or more, which a busy
    process has (each of its idle connections would look dropped and never be reused).
    """
    sock = connection.sock
    if sock is None:
        return False
    fd = sock.fileno()
    if fd < 0:
        return True
    try:
        if _poll is not None:
            poller = _poll()
            poller.register(fd, _POLL_EVENTS)
            return bool(poller.poll(0))
        readable, _, _ = select.select([fd], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


# Readable data (an EOF here), a hang-up or an error (the last two are reported anyway): distinct
# bits, so their sum is their union. Where there is no poll (Windows) none of them exists.
_POLL_EVENTS: int = sum(
    getattr(select, name, 0) for name in ("POLLIN", "POLLPRI", "POLLERR", "POLLHUP")
)
_poll: Callable[[], select.poll] | None = getattr(select, "poll", None)


def start_kept_alive(
    pool: ConnectionPool,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | bytes | None = None,
    split: tuple[Origin, str] | None = None,
) -> InFlight:
    """Send one request on a kept-alive connection of ``pool`` now, within ``deadline``; its
    answer is read with :meth:`InFlight.answer`, later if need be.

    ``headers`` may be given as :func:`~django_experience.api.http11.encode_headers` bytes, and
    ``split`` as ``split_url(url)``, by a caller that computes them once for many requests.
    """
    time_left(deadline, method, url)
    origin, target = split or split_url(url)
    if params:
        target = f"{target}?{urlencode(params)}"
    connection = pool.take(origin)
    # On an error the connection has closed itself: nothing half-used goes back to the pool.
    connection.send(method, target, headers=headers or {}, body=body, deadline=deadline)
    return InFlight(pool, origin, connection, method, url, target)


class InFlight:
    """A request sent on a kept-alive connection, its answer not read yet."""

    __slots__ = ("_connection", "_method", "_origin", "_pool", "_target", "_url")

    def __init__(
        self,
        pool: ConnectionPool,
        origin: Origin,
        connection: Connection,
        method: str,
        url: str,
        target: str,
    ) -> None:
        self._pool, self._origin, self._connection = pool, origin, connection
        self._method, self._url, self._target = method, url, target

    def answer(self, deadline: Deadline) -> RawAnswer:
        """Read the answer within ``deadline``; the connection goes back to the pool."""
        method, url = self._method, self._url
        response = self._connection.receive(method, self._target, deadline=deadline)
        self._pool.give_back(self._origin, self._connection)
        payload = response.body
        encoding = (response.headers.get("content-encoding") or "").strip().lower()
        if encoding in ("gzip", "deflate") and payload:
            payload = _decompress(payload, encoding, redact_credentials(f"{method} {url}"))
        elif encoding not in ("", "identity") and payload:
            # Never asked for (see client._decodable): say so, rather than "not JSON".
            raise MalformedResponse(
                f"the answer to {method} {redact_credentials(url)} is in Content-Encoding "
                f"{encoding!r}, which this client does not decode"
            )
        return RawAnswer(response.status, response.headers, payload)

    def cancel(self) -> None:
        """Give up on the answer: the connection is closed, never reused half-read."""
        self._connection.close()


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


__all__ = ["ConnectionPool", "InFlight", "split_url", "start_kept_alive"]
