"""One kept-alive HTTP/1.1 connection, bounded in time by a deadline: the client's fast path.

The Experience API call sits on the request path of every personalized page. The standard
library's ``http.client`` costs several times the loopback round trip itself in Python work
(its header parsing goes through the ``email`` package), and its socket timeout applies to each
read, so a server trickling its headers could hold a call long past its budget. What the client
needs is small: send one request in one write, read a status line, headers and a body framed by
``Content-Length``, ``chunked`` or the end of the connection, each read given only the time that
is left. That is this module.

Errors: :class:`RequestTimeout` when the deadline passes, :class:`ConnectionFailed` when the
connection cannot be made or breaks or the answer is not HTTP/1.x, :class:`MalformedResponse`
when the answer is larger than the client accepts.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator, Mapping

from django_experience.api.errors import ConnectionFailed, MalformedResponse, RequestTimeout
from django_experience.api.resolver import resolve
from django_experience.api.retry import Deadline

MAX_HEAD_BYTES = 64 * 1024  # status line and headers
_RECV_SIZE = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


_FRAMING_HEADERS = frozenset({"host", "content-length", "transfer-encoding"})


def encode_headers(headers: Mapping[str, str | bytes | None]) -> bytes:
    """The request header lines of ``headers`` (``Name: value\r\n`` each), checked.

    ``Host`` and the framing headers are left out: the connection writes them. As ``requests``
    does, a ``None`` value sends no header and a bytes value is sent as it is. ValueError for
    a name or value that would break the request apart (header injection).
    """
    lines = []
    for name, value in headers.items():
        if value is None or name.lower() in _FRAMING_HEADERS:
            continue
        text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
        if "\r" in text or "\n" in text or "\r" in name or "\n" in name or ":" in name:
            raise ValueError(f"invalid HTTP header {name!r}")
        lines.append(f"{name}: {text}\r\n")
    return "".join(lines).encode("latin-1")


class Headers(Mapping[str, str]):
    """Response headers looked up case-insensitively; repeated headers joined with ``", "``."""

    __slots__ = ("_items",)

    def __init__(self, items: dict[str, tuple[str, str]]) -> None:
        self._items = items  # lower-case name -> (name as sent, value)

    def __getitem__(self, name: str) -> str:
        return self._items[name.lower()][1]

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        item = self._items.get(name.lower())
        return default if item is None else item[1]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._items

    def __iter__(self) -> Iterator[str]:
        return (name for name, _ in self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({dict(self.items())!r})"


class Response:
    """A response read in full."""

    __slots__ = ("body", "headers", "status", "will_close")

    def __init__(self, status: int, headers: Headers, body: bytes, will_close: bool) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.will_close = will_close


class Connection:
    """A kept-alive connection to one origin; one request at a time (not thread-safe).

    Connects on first use (again after :meth:`close`). After a response that leaves the
    connection usable (``will_close`` false) the next request reuses the socket.
    """

    def __init__(
        self,
        scheme: str,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        max_body: int = 16 * 1024 * 1024,
    ) -> None:
        if scheme == "https" and tls is None:
            raise ValueError("an https connection needs a TLS context")
        self.scheme = scheme
        self.host = host
        self.port = port
        self.tls = tls if scheme == "https" else None
        self.max_body = max_body
        self.sock: socket.socket | None = None
        default_port = 443 if scheme == "https" else 80
        name = f"[{host}]" if ":" in host else host
        self.host_header = name if port == default_port else f"{name}:{port}"
        self._buffer = b""  # read past the last response (must stay empty between requests)
        self._early: Response | None = None  # an answer send() read (see there)
        self._answered = False  # whether this socket carried an answer before (reused)

    # -- connecting ------------------------------------------------------------------------

    def _connect(self, deadline: Deadline) -> socket.socket:
        """Resolve the name, connect and shake hands, each step given only what is left.

        The name is resolved by :func:`~django_experience.api.resolver.resolve` (kept for a
        while, looked up off this thread): a slow resolver raises ``TimeoutError`` at the
        deadline, as a slow connect does, and a failed lookup raises its ``OSError``.
        """
        error: OSError | None = None
        for family, kind, proto, _, address in resolve(self.host, self.port, deadline):
            sock = socket.socket(family, kind, proto)
            try:
                sock.settimeout(_left(deadline))
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.connect(address)
            except TimeoutError:
                sock.close()
                raise  # the budget went on this address: none is left for the next
            except OSError as exc:
                sock.close()
                error = exc  # refused or unreachable: try the next address
                continue
            except BaseException:
                sock.close()
                raise
            if self.tls is None:
                return sock
            try:
                sock.settimeout(_left(deadline))
                return self.tls.wrap_socket(sock, server_hostname=self.host)
            except BaseException:
                sock.close()
                raise
        raise error or OSError(f"no address found for {self.host}")

    def connect(self, deadline: Deadline) -> None:
        """Open the connection now (a request opens it when needed); OSError when it fails."""
        if self.sock is None:
            self.sock = self._connect(deadline)

    def close(self) -> None:
        sock, self.sock, self._buffer, self._early = self.sock, None, b"", None
        self._answered = False
        if sock is not None:
            sock.close()

    # -- one request -----------------------------------------------------------------------

    def request(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | bytes,
        body: bytes | None,
        deadline: Deadline,
    ) -> Response:
        """Send one request and read its whole response within ``deadline``.

        ``headers`` is a mapping, or the bytes :func:`encode_headers` made of one (headers sent
        with many requests are checked and encoded once).

        On any error the connection is closed (a half-used connection is never reused).
        """
        self.send(method, target, headers=headers, body=body, deadline=deadline)
        return self.receive(method, target, deadline=deadline)

    def send(
        self,
        method: str,
        target: str,
        *,
        headers: Mapping[str, str] | bytes,
        body: bytes | None,
        deadline: Deadline,
    ) -> None:
        """Send one request (connecting first when needed) within ``deadline``; its answer is
        read by :meth:`receive`, which may come later (the server answers meanwhile).

        A server may answer before it has read the whole request and close the connection (a
        413 for a body too large): sending then breaks, the answer already sent is read at once
        and :meth:`receive` returns it (the connection is closed, never reused). Only when no
        answer can be read does sending raise :class:`ConnectionFailed`.
        """
        try:
            self.connect(deadline)
            sock = self.sock
            assert sock is not None
            sock.settimeout(_left(deadline))
            sock.sendall(self._encode(method, target, headers, body))
        except (BrokenPipeError, ConnectionResetError, ssl.SSLEOFError) as exc:
            # The server may have answered before reading the whole request (a 413 for a body
            # too large, say) and closed: that answer, not the broken pipe, is the outcome.
            # (Over TLS that closing may show as an EOF "in violation of protocol".)
            early = self._early_answer(method, deadline)
            if early is None:
                error = self._failed(exc, method, target, deadline)
                if error is exc:  # pragma: no cover - an OSError is always translated
                    raise
                raise error from exc
            self.close()  # never reused: the request was not sent whole
            self._early = early  # what receive() returns
        except BaseException as exc:
            error = self._failed(exc, method, target, deadline)
            if error is exc:
                raise
            raise error from exc

    def _early_answer(self, method: str, deadline: Deadline) -> Response | None:
        """The answer the server sent before it broke off our sending, read within
        ``deadline``; ``None`` when not even its status line and headers can be read."""
        sock = self.sock
        if sock is None:
            return None
        try:
            version, status, headers = self._read_status(sock, deadline)
        except (OSError, _ProtocolError):  # TimeoutError too
            return None
        try:
            return self._read_body(sock, method, version, status, headers, deadline)
        except (OSError, _ProtocolError, MalformedResponse):
            return Response(status, headers, b"", True)  # its status is what counts

    def receive(self, method: str, target: str, *, deadline: Deadline) -> Response:
        """Read the whole answer to the request :meth:`send` sent, within ``deadline``."""
        early = self._early
        if early is not None:
            self._early = None
            return early  # read by send(); the connection is closed already
        try:
            sock = self.sock
            if sock is None:
                raise OSError("the connection was closed before its answer was read")
            response = self._read_response(sock, method, deadline)
        except BaseException as exc:
            # The whole request went out: the server may have acted on it, unless a connection
            # that answered before ended without a byte of this answer (closed while idle).
            applied = not (self._answered and isinstance(exc, _Unanswered))
            error = self._failed(exc, method, target, deadline, maybe_applied=applied)
            if error is exc:
                raise
            raise error from exc
        if response.will_close or self._buffer:
            self.close()  # the server said so, or sent more than one answer: start afresh
        else:
            self._answered = True
        return response

    def _failed(
        self,
        exc: BaseException,
        method: str,
        target: str,
        deadline: Deadline,
        *,
        maybe_applied: bool = False,
    ) -> BaseException:
        """Close the connection after ``exc`` (a half-used one is never reused) and return the
        client's error for it (a plain ``try`` on the hot path, no context manager).
        ``maybe_applied``: see :class:`ConnectionFailed`."""
        self.close()
        if isinstance(exc, TimeoutError):  # socket.timeout, or _left() finding nothing left
            return RequestTimeout(
                f"no answer to {self._what(method, target)} within the time budget of "
                f"{deadline.budget:g}s"
            )
        if isinstance(exc, _ProtocolError):
            what = self._what(method, target)
            return ConnectionFailed(
                f"{what}: the answer is not HTTP/1.1: {exc}", maybe_applied=maybe_applied
            )
        if isinstance(exc, OSError):  # refused, unresolvable, reset, TLS (ssl.SSLError is one)
            return ConnectionFailed(
                f"connection for {self._what(method, target)} failed: {exc}",
                maybe_applied=maybe_applied,
            )
        return exc  # MalformedResponse, and anything not ours to translate: as it is

    def _what(self, method: str, target: str) -> str:
        """The request, for an error message (formatted only when one is raised)."""
        return f"{method} {self.scheme}://{self.host_header}{target}"

    def _encode(
        self, method: str, target: str, headers: Mapping[str, str] | bytes, body: bytes | None
    ) -> bytes:
        start = f"{method} {target} HTTP/1.1\r\nHost: {self.host_header}\r\n"
        parts = [
            start.encode("latin-1"),
            headers if isinstance(headers, bytes) else encode_headers(headers),
        ]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            parts.append(f"Content-Length: {len(body or b'')}\r\n".encode("ascii"))
        parts += (b"\r\n", body or b"")
        return b"".join(parts)  # one write: one segment for a small request

    # -- reading ---------------------------------------------------------------------------

    def _recv(self, sock: socket.socket, deadline: Deadline) -> bytes:
        sock.settimeout(_left(deadline))
        return sock.recv(_RECV_SIZE)

    def _read_head(self, sock: socket.socket, deadline: Deadline) -> bytes:
        data = self._buffer
        searched = 0
        while True:
            end = data.find(b"\r\n\r\n", max(0, searched - 3))
            if end > MAX_HEAD_BYTES or (end < 0 and len(data) > MAX_HEAD_BYTES):
                raise _ProtocolError(f"the status line and headers exceed {MAX_HEAD_BYTES} bytes")
            if end >= 0:
                self._buffer = data[end + 4 :]
                return data[:end]
            searched = len(data)
            try:
                chunk = self._recv(sock, deadline)
            except ConnectionResetError as exc:
                if data:
                    raise
                raise _Unanswered(
                    f"the server reset the connection without answering: {exc}"
                ) from exc
            if not chunk:
                if not data:
                    raise _Unanswered("the server closed the connection without answering")
                raise _ProtocolError("the connection closed in the middle of the headers")
            data += chunk

    def _read_response(self, sock: socket.socket, method: str, deadline: Deadline) -> Response:
        version, status, headers = self._read_status(sock, deadline)
        return self._read_body(sock, method, version, status, headers, deadline)

    def _read_status(self, sock: socket.socket, deadline: Deadline) -> tuple[str, int, Headers]:
        """The status line and headers of the answer (interim answers skipped)."""
        version, status, headers = _parse_head(self._read_head(sock, deadline))
        while 100 <= status < 200 and status != 101:
            # 100 Continue, 103 Early Hints: the real answer follows (an end now is an answer
            # broken off, not a request unanswered).
            try:
                head = self._read_head(sock, deadline)
            except _Unanswered as exc:
                raise _ProtocolError(
                    f"the connection closed after an interim answer: {exc}"
                ) from exc
            version, status, headers = _parse_head(head)
        return version, status, headers

    def _read_body(
        self,
        sock: socket.socket,
        method: str,
        version: str,
        status: int,
        headers: Headers,
        deadline: Deadline,
    ) -> Response:
        """The answer whose head :meth:`_read_status` read, with its body read in full."""
        connection = (headers.get("connection") or "").lower()
        will_close = (
            "close" in connection
            or (version == "HTTP/1.0" and "keep-alive" not in connection)
            or status == 101  # what follows is another protocol: never reused for HTTP
        )
        if method == "HEAD" or status in _NO_BODY_STATUSES or 100 <= status < 200:
            return Response(status, headers, b"", will_close)
        encoding = (headers.get("transfer-encoding") or "").lower()
        if encoding:
            if encoding.replace(" ", "").split(",")[-1] != "chunked":
                raise _ProtocolError(f"unsupported Transfer-Encoding {encoding!r}")
            return Response(status, headers, self._read_chunked(sock, deadline), will_close)
        length_header = headers.get("content-length")
        if length_header is None:
            return Response(status, headers, self._read_to_close(sock, deadline), True)
        lengths = {part.strip() for part in length_header.split(",")}
        if len(lengths) != 1 or not _is_number(next(iter(lengths))):
            raise _ProtocolError(f"invalid Content-Length {length_header!r}")
        length = int(next(iter(lengths)))
        self._check_size(length)
        return Response(status, headers, self._read_exactly(sock, length, deadline), will_close)

    def _check_size(self, size: int) -> None:
        if size > self.max_body:
            raise MalformedResponse(f"the answer is larger than {self.max_body} bytes")

    def _read_exactly(self, sock: socket.socket, length: int, deadline: Deadline) -> bytes:
        data = self._buffer
        if len(data) < length:
            # Joined once: adding each piece to the bytes read so far would copy them all
            # again every time (a second and a half for a 16 MiB answer).
            parts, size = [data], len(data)
            while size < length:
                chunk = self._recv(sock, deadline)
                if not chunk:
                    raise _ProtocolError(
                        f"the connection closed after {size} of {length} body bytes"
                    )
                parts.append(chunk)
                size += len(chunk)
            data = b"".join(parts)
        self._buffer = data[length:]
        return data[:length]

    def _read_line(self, sock: socket.socket, deadline: Deadline) -> bytes:
        data = self._buffer
        while True:
            end = data.find(b"\r\n")
            if end >= 0:
                self._buffer = data[end + 2 :]
                return data[:end]
            if len(data) > MAX_HEAD_BYTES:
                raise _ProtocolError("a chunk size line is too long")
            chunk = self._recv(sock, deadline)
            if not chunk:
                raise _ProtocolError("the connection closed in the middle of a chunked body")
            data += chunk

    def _read_chunked(self, sock: socket.socket, deadline: Deadline) -> bytes:
        parts: list[bytes] = []
        size = 0
        while True:
            line = self._read_line(sock, deadline).split(b";", 1)[0].strip()
            if not line or line.translate(None, _HEX_DIGITS):  # int() takes "+1", "-1", "1_0"
                raise _ProtocolError(f"invalid chunk size {line[:20]!r}")
            chunk_size = int(line, 16)
            if chunk_size == 0:
                while self._read_line(sock, deadline):  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            size += chunk_size
            self._check_size(size)
            parts.append(self._read_exactly(sock, chunk_size, deadline))
            if self._read_line(sock, deadline):
                raise _ProtocolError("a chunk is longer than its size says")

    def _read_to_close(self, sock: socket.socket, deadline: Deadline) -> bytes:
        parts = [self._buffer]
        size = len(self._buffer)
        self._buffer = b""
        self._check_size(size)
        while True:
            chunk = self._recv(sock, deadline)
            if not chunk:
                return b"".join(parts)
            size += len(chunk)
            self._check_size(size)
            parts.append(chunk)


class _ProtocolError(Exception):
    """The answer does not follow HTTP/1.x (reported as a broken connection)."""


class _Unanswered(_ProtocolError):
    """The connection ended (closed or reset) before a byte of the answer arrived."""


_HEX_DIGITS = b"0123456789abcdefABCDEF"


def _is_number(text: str) -> bool:
    """Whether ``text`` is a number in ASCII digits (``str.isdigit`` also takes "²", which
    ``int`` refuses)."""
    return text.isascii() and text.isdigit()


def _left(deadline: Deadline) -> float:
    remaining = deadline.remaining()
    if remaining <= 0:
        raise TimeoutError("time budget spent")
    return remaining


def _parse_head(head: bytes) -> tuple[str, int, Headers]:
    try:
        text = head.decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        raise _ProtocolError("undecodable headers") from None
    lines = text.split("\r\n")
    status_line = lines[0]
    version, _, rest = status_line.partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not _is_number(code) or rest[3:4] not in ("", " "):
        raise _ProtocolError(f"bad status line {status_line[:40]!r}")
    items: dict[str, tuple[str, str]] = {}
    last: str | None = None
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):  # obsolete line folding: continues the previous header
            if last is None:
                raise _ProtocolError("a folded header line without a header")
            name, value = items[last]
            items[last] = (name, f"{value} {line.strip()}")
            continue
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise _ProtocolError(f"bad header line {line[:40]!r}")
        key = name.lower()
        value = value.strip()
        if key in items:
            items[key] = (items[key][0], f"{items[key][1]}, {value}")
        else:
            items[key] = (name, value)
        last = key
    return version, int(code), Headers(items)


__all__ = ["MAX_HEAD_BYTES", "Connection", "Headers", "Response", "encode_headers"]
