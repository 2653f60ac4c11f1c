"""Send one HTTP request through ``requests`` and read its answer within a deadline.

This is the path of a session the caller passed in or changed (see ``ExperienceClient``); the
client's own session takes the kept-alive path of ``connections``, where every socket
operation is bounded by the deadline. Through ``requests`` only part of that can be done,
because urllib3's timeouts apply to each socket operation and ``requests`` gives no hold on
the socket before the answer's headers have been read:

- connecting gets what is left of the deadline (each address tried gets that much);
- each read of the status line and headers gets what connecting left of it (urllib3's
  ``total``), so a silent server is given up on within the budget, but nothing limits the
  number of reads: a server that keeps sending its head a byte at a time, each byte within
  that time, holds the call for as long as it keeps doing so;
- the body is read in small reads, the deadline checked before each one and each given only
  what is left, so a trickled or stalled body cannot stretch the call.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests
import urllib3
import urllib3.exceptions

from django_experience.api.errors import (
    ConnectionFailed,
    MalformedResponse,
    RequestTimeout,
    TransportError,
)
from django_experience.api.retry import Deadline

# The API answers with small JSON documents; anything this large is not one of them.
MAX_BODY_BYTES = 16 * 1024 * 1024
_READ_SIZE = 64 * 1024


@dataclass(frozen=True)
class RawAnswer:
    """An HTTP answer read in full."""

    status: int
    headers: Mapping[str, str]
    body: bytes


# The user information of a URL (``//user:password@``, up to the authority's last ``@``), and
# a password holding a raw ``/``, ``?`` or ``#`` (it ends the authority for a URL parser, so the
# URL is broken, and its error message quotes it): ``//user:pa/ss@``, unless what follows the
# colon is a port.
_USERINFO = re.compile(r"(?<=//)(?:[^/?#\s]*@|[^/?#\s@:]*:(?!\d*(?:[/?#\s]|$))[^\s@]*@)")


def redact_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``: a URL goes
    into error messages, and they get logged."""
    return _USERINFO.sub("***@", text) if "@" in text else text


def _cause(exc: BaseException) -> BaseException | None:
    """``exc``, to chain to the client's error, unless its text or that of an exception it
    chains names credentials (a logged traceback prints them all): then ``None``."""
    seen: BaseException | None = exc
    for _ in range(16):
        if seen is None:
            return exc
        text = str(seen)
        if redact_credentials(text) != text:
            return None
        seen = seen.__cause__ or seen.__context__
    return None


def time_left(deadline: Deadline, method: str, url: str) -> float:
    """Seconds left for a request about to start; RequestTimeout when there are none."""
    remaining = deadline.remaining()
    if remaining <= 0:
        raise RequestTimeout(
            f"time budget of {deadline.budget:g}s spent before {method} {redact_credentials(url)}"
        )
    return remaining


def send(
    session: requests.Session,
    method: str,
    url: str,
    *,
    deadline: Deadline,
    params: Mapping[str, str] | None = None,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> RawAnswer:
    """One request, connected, sent and read within ``deadline``. Raises TransportError."""
    remaining = time_left(deadline, method, url)
    # ``total``: the wait for the answer gets only what connecting left of the budget.
    timeout: Any = urllib3.Timeout(connect=remaining, read=remaining, total=remaining)
    try:
        response = session.request(
            method,
            url,
            params=params,
            data=body,
            headers=dict(headers or {}),
            timeout=timeout,
            stream=True,
            allow_redirects=False,
        )
    except requests.Timeout as exc:
        raise RequestTimeout(
            f"no answer to {method} {redact_credentials(url)} within the time budget of "
            f"{deadline.budget:g}s"
        ) from _cause(exc)
    except requests.ConnectionError as exc:
        message = f"connection to {url} failed: {exc}"
        raise ConnectionFailed(
            redact_credentials(message), maybe_applied=_maybe_sent(exc)
        ) from _cause(exc)
    except requests.RequestException as exc:
        message = f"{method} {url} failed: {exc}"
        raise TransportError(redact_credentials(message)) from _cause(exc)
    except (urllib3.exceptions.LocationValueError, UnicodeError) as exc:
        # A host name no resolver takes, found by urllib3 when it connects (requests lets it
        # through as it is).
        message = f"connection to {url} failed: the host name is not valid: {exc}"
        raise ConnectionFailed(redact_credentials(message)) from _cause(exc)

    try:
        payload = read_body(response.raw, deadline, f"{method} {redact_credentials(url)}")
    except BaseException:
        response.close()  # a half-read connection must not go back to the pool
        raise
    _release(response)
    return RawAnswer(response.status_code, response.headers, payload)


def read_body(raw: Any, deadline: Deadline, what: str) -> bytes:
    """The whole body of ``raw`` within ``deadline``: a urllib3 response, or the file-like
    stand-in an HTTP mocking library may give ``requests`` instead."""
    read1 = getattr(raw, "read1", None)
    decoding = hasattr(raw, "release_conn")  # urllib3 decodes gzip itself, like requests does
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline.remaining()
        if remaining <= 0:
            raise RequestTimeout(
                f"the answer to {what} was not read within the time budget of {deadline.budget:g}s"
            )
        _set_socket_timeout(raw, remaining)
        try:
            if decoding:
                chunk = (read1 or raw.read)(_READ_SIZE, decode_content=True)
            else:
                chunk = (read1 or raw.read)(_READ_SIZE)  # read1: return what has arrived
        except (TimeoutError, urllib3.exceptions.ReadTimeoutError) as exc:
            raise RequestTimeout(
                f"the answer to {what} was not read within the time budget of {deadline.budget:g}s"
            ) from exc
        except urllib3.exceptions.DecodeError as exc:
            raise MalformedResponse(f"the answer to {what} could not be decoded: {exc}") from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise ConnectionFailed(
                f"the connection broke while reading {what}: {exc}", maybe_applied=True
            ) from exc
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise MalformedResponse(f"the answer to {what} is larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)


def _maybe_sent(exc: requests.ConnectionError) -> bool:
    """Whether the request may have reached the server: only a failure to connect (urllib3's
    ``NewConnectionError``, a failed name lookup included) or to reach a proxy says not."""
    if isinstance(exc, requests.exceptions.ProxyError):
        return False
    seen: BaseException | None = exc
    for _ in range(16):  # requests wraps urllib3's MaxRetryError, whose reason is the failure
        if seen is None:
            break
        if isinstance(seen, urllib3.exceptions.NewConnectionError):
            return False
        if isinstance(seen, urllib3.exceptions.MaxRetryError) and seen.reason is not None:
            seen = seen.reason
        else:
            seen = seen.__cause__ or seen.__context__
    return True


def _set_socket_timeout(raw: Any, seconds: float) -> None:
    """Give the next socket read only ``seconds`` (best effort: depends on urllib3 internals)."""
    sock = getattr(getattr(raw, "connection", None), "sock", None)
    if not isinstance(sock, socket.socket):
        plain = getattr(raw, "_fp", raw)  # urllib3 wraps an http.client response
        buffered = getattr(plain, "fp", None)
        sock = getattr(getattr(buffered, "raw", None), "_sock", None)
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed: the read reports it
            sock.settimeout(seconds)


def _release(response: requests.Response) -> None:
    """Hand the fully read connection back to the pool for keep-alive."""
    release = getattr(response.raw, "release_conn", None)
    if callable(release):
        release()
    else:
        response.close()


__all__ = ["MAX_BODY_BYTES", "RawAnswer", "read_body", "redact_credentials", "send", "time_left"]
