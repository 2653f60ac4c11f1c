"""HTTP for the destination clients: one JSON request, retried on rate limits and outages.

Retried: 429 and 503 answers and connection failures, with exponential backoff and jitter,
honouring ``Retry-After`` (seconds or an HTTP date). Profile upserts are idempotent, so sending
one again is safe. Other answers are returned to the caller, which turns them into errors.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from django_experience import __version__
from django_experience.api.retry import parse_retry_after
from django_experience.destinations.errors import DestinationError, RateLimited, TransportError

# 408: the server ended a kept-alive connection it had read no request from (RFC 9110).
RETRY_STATUSES = frozenset({408, 429, 503})
USER_AGENT = f"django-experience/{__version__}"

ErrorParser = Callable[["Answer"], DestinationError]


@dataclass(frozen=True)
class Answer:
    """An HTTP answer: status, headers and the body parsed as JSON (``None`` if it was not)."""

    status: int
    headers: Mapping[str, str]
    body: Any
    text: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry.

    ``max_retries``: extra attempts after the first. ``backoff``: first wait in seconds, doubled
    each time, capped at ``max_backoff``. ``max_retry_wait``: a ``Retry-After`` longer than this
    is not waited for; the error is raised at once with ``retry_after`` set, so the caller can
    schedule the retry itself.
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 10.0
    max_retry_wait: float = 60.0

    def delay(self, attempt: int) -> float:
        """Backoff before retry number ``attempt`` (0-based), with jitter."""
        base = min(self.max_backoff, self.backoff * (2.0**attempt))
        return float(base * random.uniform(0.5, 1.0))


def new_session(pool_size: int = 10) -> requests.Session:
    """A ``requests.Session`` with a connection pool sized for threaded callers."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def bearer_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Content-Type": "application/json",
        "Accept": "application/json",
        "User-Agent": USER_AGENT,
    }


class JSONTransport:
    """Sends JSON requests over one shared session, retrying per :class:`RetryPolicy`."""

    def __init__(
        self,
        session: requests.Session | None,
        *,
        timeout: float,
        policy: RetryPolicy,
        parse_error: ErrorParser,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout!r}")
        if policy.max_retries < 0:
            raise ValueError(f"max_retries must be 0 or more, not {policy.max_retries!r}")
        self.session = session or new_session()
        self.timeout = timeout
        self.policy = policy
        self.parse_error = parse_error
        self._sleep = sleep

    def request(
        self, method: str, url: str, *, headers: Mapping[str, str], body: Any = None
    ) -> Answer:
        """Send until a non-retryable answer arrives; raise the error for any non-2xx answer."""
        data = None if body is None else json.dumps(body, separators=(",", ":")).encode()
        attempt = 0
        while True:
            error: DestinationError
            try:
                answer = self._send(method, url, headers, data)
            except TransportError as exc:
                error = exc
                wait = None
            else:
                if answer.ok:
                    return answer
                error = self.parse_error(answer)
                if answer.status not in RETRY_STATUSES:
                    raise error
                wait = parse_retry_after(answer.headers.get("Retry-After"))
                if isinstance(error, RateLimited):
                    error.retry_after = wait
            if attempt >= self.policy.max_retries:
                raise error
            if wait is not None and wait > self.policy.max_retry_wait:
                raise error
            self._sleep(self.policy.delay(attempt) if wait is None else wait)
            attempt += 1

    def _send(
        self, method: str, url: str, headers: Mapping[str, str], data: bytes | None
    ) -> Answer:
        try:
            response = self.session.request(
                method, url, headers=dict(headers), data=data, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise TransportError(f"{method} {url} failed: {exc}") from exc
        text = response.text
        try:
            body: Any = json.loads(text) if text.strip() else None
        except ValueError:
            body = None
        return Answer(response.status_code, response.headers, body, text)


__all__ = [
    "Answer",
    "JSONTransport",
    "RetryPolicy",
    "bearer_headers",
    "new_session",
    "parse_retry_after",
]
