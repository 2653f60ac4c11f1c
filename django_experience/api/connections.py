"""Kept-alive ``http.client`` connections for the client's own session: the fast path.

A call to the Experience API sits on the request path of every personalized page, so the HTTP
stack's own cost counts. ``requests`` spends several loopback round trips' worth of CPU per call
(preparing the request, cookie jars, hooks, pool bookkeeping); the standard library's
``http.client`` on a kept-alive socket costs little more than the round trip itself. This
module keeps a pool of idle connections per origin (each used by one thread at a time, as
``http.client`` is not thread-safe) and sends one request within a
:class:`~django_experience.api.retry.Deadline`, raising the same errors as
:func:`django_experience.api.transport.send`.
"""

from __future__ import annotations

import http.client
import os
import select
import ssl
import threading
import zlib
from collections.abc import Callable, Mapping
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
        self._idle: dict[Origin, list[http.client.HTTPConnection]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def take(self, origin: Origin, timeout: float) -> http.client.HTTPConnection:
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
            if scheme == "https":
                if self._tls is None:
                    self._tls = self._make_tls()
                connection = http.client.HTTPSConnection(
                    host, port, timeout=timeout, context=self._tls
                )
            else:
                connection = http.client.HTTPConnection(host, port, timeout=timeout)
        connection.timeout = timeout  # for connecting, when the socket is (re)opened
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        return connection

    def give_back(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
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


def _dropped(connection: http.client.HTTPConnection) -> bool:
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
    remaining = time_left(deadline, method, url)
    origin, target = split_url(url)
    if params:
        target = f"{target}?{urlencode(params)}"
    what = f"{method} {url}"
    connection = pool.take(origin, remaining)
    try:
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        payload = read_body(response, deadline, what)
        response.close()  # read to the end: the connection is free for the next request
    except TimeoutError as exc:  # socket.timeout: connecting or waiting for the answer
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


__all__ = ["ConnectionPool", "send_kept_alive", "split_url"]
