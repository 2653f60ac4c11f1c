"""``ExperienceClient``: every endpoint of the Experience API, with retries and a time budget.

One client is shared between threads (it is thread-safe) instead of built per request. Calls
go over kept-alive HTTP/1.1 connections (``http11``) from one pool of idle connections shared
by all threads (see ``connections``); a session the caller passes in, or changes, is used through
``requests`` with its pool sized for threaded servers.

``timeout`` is the total budget of one call: connecting, the TLS handshake, sending, waiting
for and reading the answer, every retry and every pause between retries. On the client's own
kept-alive path every step (resolving the host name too, see ``resolver``) gets only what is
left of it, so no call takes longer. Through
``requests`` (a session of the caller's, or one changed) the budget bounds connecting, a silent
server and the body, but not a server that keeps sending its status line and headers a byte at
a time: urllib3 bounds each of those reads, not their number (see ``transport``).

The single-profile calls (``create_profile``, ``update_profile``, ``get_profile``,
``delete_profile``) take a keyword ``timeout`` that replaces the client's for that one call,
e.g. what is left of a page's budget; zero, less or NaN raises ``RequestTimeout`` without
sending. The batch calls (``upsert_profiles``, ``send_events``, ``import_events``) apply
``timeout`` to each request of the batch, not to the whole batch: a batch of many requests may
take many times ``timeout``.

Retried: 429, 503 and connection failures, up to ``max_retries`` times, with exponential
backoff and jitter or the server's ``Retry-After``. Never retried: every other status (other
4xx are the caller's mistake).
"""

from __future__ import annotations

import functools
import ipaddress
import itertools
import math
import os
import ssl
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence, Sized
from http.cookiejar import DefaultCookiePolicy
from typing import Any, cast
from urllib.parse import quote, urlsplit

import idna  # a dependency of requests: its way of writing a host name in ASCII
import requests
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting as _untyped_merge_setting
from requests.structures import CaseInsensitiveDict
from requests.utils import DEFAULT_CA_BUNDLE_PATH, get_environ_proxies

from django_experience import __version__
from django_experience.api.batching import (
    MAX_BATCH_BYTES,
    EncodedBatch,
    plan_batches,
    split_encoded,
)
from django_experience.api.connections import (
    ConnectionPool,
    InFlight,
    split_url,
    start_kept_alive,
)
from django_experience.api.encoding import encode, events_body
from django_experience.api.envelope import unwrap
from django_experience.api.errors import (
    ExperienceAPIError,
    InvalidData,
    MalformedResponse,
    RequestTimeout,
)
from django_experience.api.http11 import encode_headers
from django_experience.api.retry import Deadline, RetryPolicy, call_with_retries
from django_experience.api.scheduling import run_batches
from django_experience.api.transport import redact_credentials, send
from django_experience.api.types import Profile, ProfileResult

DEFAULT_BASE_URL = "https://experience.ninetailed.co"
DEFAULT_TIMEOUT = 3.0
DEFAULT_MAX_RETRIES = 2
# Enough kept-alive connections for a threaded WSGI server plus concurrent batch workers.
DEFAULT_POOL_SIZE = 32
USER_AGENT = f"django-experience/{__version__}"

Event = dict[str, Any]


_ADAPTER_SEND = HTTPAdapter.send

_CHANGES = itertools.count(1)


class _WatchedHeaders(CaseInsensitiveDict[str | bytes]):
    """The own session's headers, numbering their changes: headers merged from them are reused
    until they change. (Every change of a ``MutableMapping`` goes through these two methods.)"""

    version = 0

    def __setitem__(self, key: str, value: str | bytes) -> None:
        super().__setitem__(key, value)
        # A fresh number after the change: a merge that read the old one is never reused.
        self.version = next(_CHANGES)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.version = next(_CHANGES)


# Per content type: the merged headers, their encoding, and their names in lower case.
_MergedHeaders = dict[str | None, tuple[dict[str, str], bytes, frozenset[str]]]


def _tls_context(verify: bool | str | None) -> ssl.SSLContext:
    """Certificate checks for the kept-alive path, as ``requests`` makes them."""
    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    bundle = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


def _events_list(events: Iterable[Mapping[str, Any]]) -> list[Event]:
    if isinstance(events, Mapping | str | bytes):
        raise InvalidData("events must be a list of event dicts, not a single value")
    listed = list(events)
    if not listed:
        raise InvalidData("events must not be empty: send at least one event")
    for index, event in enumerate(listed):
        if not isinstance(event, Mapping):
            raise InvalidData(
                f"events[{index}] must be an object (dict), got {type(event).__name__}"
            )
    return [dict(event) for event in listed]


def _resolving_location(event: Event) -> Event:
    """``event`` without the empty ``context.location`` the builders set (it tells the API to
    resolve none), for calls that ask for the ``location`` feature."""
    context = event.get("context")
    if not isinstance(context, Mapping) or context.get("location") != {}:
        return event
    return {**event, "context": {k: v for k, v in context.items() if k != "location"}}


def _request_headers(content_type: str | None, headers: Mapping[str, str] | None) -> dict[str, str]:
    """The headers a call adds to the session's."""
    request_headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
    if content_type is not None:
        request_headers["Content-Type"] = content_type
    request_headers.update(headers or {})
    return request_headers


# The content codings the kept-alive path decodes (see ``connections``).
_DECODED_CODINGS = frozenset({"gzip", "deflate", "identity"})


def _coding(offer: str) -> str:
    """``gzip`` of ``gzip;q=0.8``."""
    return offer.split(";")[0].strip().lower()


_merge_setting: Callable[..., Any] = _untyped_merge_setting  # untyped in requests' stubs


def _merge(earlier: Mapping[str, Any], later: Mapping[str, Any]) -> dict[str, Any]:
    """Headers merged by ``requests``' own rule (``merge_setting``): by name in any case, the
    later value winning under its spelling, a ``None`` value removing the header."""
    return dict(_merge_setting(later, earlier, dict_class=CaseInsensitiveDict).items())


def _decodable(headers: Mapping[str, Any]) -> dict[str, Any]:
    """``headers`` asking only for codings the kept-alive path decodes: ``requests`` offers br
    and zstd whenever their packages are installed, and an edge answering in one would make
    every call fail. (Through ``requests`` itself, the session's value goes out as it is.)"""
    merged = dict(headers)
    for name, value in merged.items():
        if isinstance(value, str) and name.lower() == "accept-encoding":
            offered = [part.strip() for part in value.split(",")]
            kept = [part for part in offered if _coding(part) in _DECODED_CODINGS]
            merged[name] = ", ".join(kept) or "identity"
    return merged


def checked_host(base_url: str) -> str | None:
    """ValueError naming what is wrong with the host of ``base_url`` (a name no resolver
    takes: an empty label, one longer than 63 characters, ...); the ASCII (IDNA) form of a
    name that is not ASCII, as ``requests`` makes it, else ``None``."""
    shown = redact_credentials(base_url)
    try:
        parts = urlsplit(base_url)
        _ = parts.port  # raises for a port that is not a number in range
    except ValueError as exc:
        raise ValueError(f"base_url {shown!r} is not a valid URL: {exc}") from None
    host = parts.hostname or ""
    if not host:
        raise ValueError(f"base_url must name a host, got {shown!r}")
    if "[" in parts.netloc:  # an IPv6 literal: checked here, as urlsplit does only from 3.11
        try:
            ipaddress.IPv6Address(host.partition("%")[0])
        except ValueError as exc:
            raise ValueError(f"base_url {shown!r} is not a valid URL: {exc}") from None
        return None
    name = host.removesuffix(".")  # "example.com." is fully qualified: fine
    idna_host = None
    if not name.isascii():
        try:
            idna_host = name = idna.encode(name, uts46=True).decode("ascii")
        except idna.IDNAError as exc:
            raise ValueError(f"base_url's host {host!r} is not a valid host name: {exc}") from None
    problem = None
    if any(char <= " " or char == "\x7f" for char in name):
        problem = "it has a space or a control character"
    elif len(name) > 253:
        problem = "it is longer than 253 characters"
    elif any(not label for label in name.split(".")):
        problem = "it has an empty label (two dots in a row, or a dot first)"
    else:
        long = next((label for label in name.split(".") if len(label) > 63), None)
        if long is not None:
            problem = f"its label {long[:20]}... is longer than 63 characters"
    if problem:
        raise ValueError(f"base_url's host {host!r} is not a valid host name: {problem}")
    return idna_host


def _has_cookies(jar: object, own: object) -> bool:
    """Whether ``requests`` could send a cookie from ``jar``: any in the session's own jar (set
    by hand: the API sets none that are kept), or a jar put in its place."""
    if jar is not own:
        return True
    cookies = getattr(jar, "_cookies", None)  # CookieJar's: len() iterates every cookie
    return bool(cookies) if isinstance(cookies, dict) else bool(len(cast("Sized", jar)))


def _profile_id(profile_id: str) -> str:
    if not isinstance(profile_id, str) or not profile_id:
        raise InvalidData(f"profile_id must be a non-empty string, got {profile_id!r}")
    return quote(profile_id, safe="")


class _Request:
    """One API request, built once: called with a deadline it is one attempt (send, then read
    the answer); :meth:`start` sends the first attempt now and reads it later."""

    __slots__ = ("body", "client", "content_type", "headers", "method", "params", "path", "url")

    def __init__(
        self,
        client: ExperienceClient,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: bytes | None,
        content_type: str | None,
        headers: Mapping[str, str] | None,
    ) -> None:
        self.client, self.method, self.path, self.params = client, method, path, params
        self.body, self.content_type, self.headers = body, content_type, headers
        self.url = client.url(path)

    def __call__(self, deadline: Deadline) -> Any:
        return self.start(deadline)(deadline)

    def start(self, deadline: Deadline) -> Callable[[Deadline], Any]:
        """Send now; the returned function reads the answer (``data``) within its deadline.

        Off the kept-alive path (a caller's session, mocked HTTP) nothing is sent before the
        answer is asked for: the whole attempt runs then.
        """
        client, method, url = self.client, self.method, self.url
        session = client.session
        what = f"{method} {self.path}"
        if not client._direct_route(session, url):
            return lambda deadline: unwrap(
                send(
                    session,
                    method,
                    url,
                    deadline=deadline,
                    params=self.params,
                    body=self.body,
                    headers=_request_headers(self.content_type, self.headers),
                ),
                what,
            )
        in_flight = start_kept_alive(
            client._connections,
            method,
            url,
            deadline=deadline,
            params=self.params,
            body=self.body,
            headers=client._kept_alive_headers(session, self.content_type, self.headers),
            split=(client._origin, client._target_prefix + self.path),
        )
        return _Answer(in_flight, what)


class _Answer:
    """Reads the answer of a request in flight, once; :meth:`cancel` drops it unread."""

    __slots__ = ("_in_flight", "_what")

    def __init__(self, in_flight: InFlight, what: str) -> None:
        self._in_flight: InFlight | None = in_flight
        self._what = what

    def __call__(self, deadline: Deadline) -> Any:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            raise RuntimeError("the answer was read or dropped already")
        return unwrap(in_flight.answer(deadline), self._what)

    def cancel(self) -> None:
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.cancel()


class PendingProfile:
    """A profile update in flight (:meth:`ExperienceClient.begin_update_profile`)."""

    def __init__(
        self,
        client: ExperienceClient,
        request: _Request,
        first: Callable[[Deadline], Any] | BaseException,
    ) -> None:
        self._client, self._request = client, request
        self._first: Callable[[Deadline], Any] | BaseException | None = first

    def result(self, timeout: float | None = None) -> ProfileResult:
        """The answer, waited for at most ``timeout`` seconds (the client's timeout if None);
        retried as :meth:`ExperienceClient.update_profile` retries. Raises its errors."""
        client, request = self._client, self._request
        deadline = client._budget(timeout, request.method, request.path)

        def attempt(deadline: Deadline) -> Any:
            first, self._first = self._first, None
            if first is None:
                return request(deadline)  # a retry: sent and read now
            if isinstance(first, BaseException):
                raise first
            return first(deadline)

        try:
            data = call_with_retries(attempt, client.retry_policy, deadline)
        finally:
            self.cancel()  # the budget or the policy may have ended it before the first read
        return client._profile_result(data, "profile update")

    @property
    def send_error(self) -> BaseException | None:
        """What sending met, when it failed (``result`` raises it, or retries it)."""
        return self._first if isinstance(self._first, BaseException) else None

    def cancel(self) -> None:
        """Drop the answer unread (its connection is closed); ``result`` then sends anew."""
        first, self._first = self._first, None
        if isinstance(first, _Answer):
            first.cancel()


class ExperienceClient:
    """Client of one organization's environment of the Experience API."""

    def __init__(
        self,
        organization_id: str,
        environment: str = "main",
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        session: requests.Session | None = None,
        *,
        retry_policy: RetryPolicy | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if not isinstance(organization_id, str) or not organization_id:
            raise ValueError(f"organization_id must be a non-empty string, got {organization_id!r}")
        if not isinstance(environment, str) or not environment:
            raise ValueError(f"environment must be a non-empty string, got {environment!r}")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            shown = redact_credentials(base_url) if isinstance(base_url, str) else base_url
            raise ValueError(f"base_url must be an http(s) URL, got {shown!r}")
        idna_host = checked_host(base_url)
        if not 0 < timeout < math.inf:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        if not isinstance(max_batch_bytes, int) or max_batch_bytes < 1024:
            raise ValueError(
                f"max_batch_bytes must be an int of at least 1024, got {max_batch_bytes!r}"
            )
        self.organization_id = organization_id
        self.environment = environment
        self.base_url = base_url.rstrip("/")
        self.timeout = float(timeout)
        self.max_batch_bytes = max_batch_bytes
        self.retry_policy = retry_policy or RetryPolicy(max_retries=max_retries)
        self.max_retries = self.retry_policy.max_retries
        self._prefix = (
            f"{self.base_url}/v2/organizations/{quote(organization_id, safe='')}"
            f"/environments/{quote(environment, safe='')}"
        )
        # Every endpoint's URL is the prefix plus its path: split it for the kept-alive path once.
        self._origin, self._target_prefix = split_url(self._prefix)
        if idna_host is not None:  # the kept-alive path connects to, and names, this form
            self._origin = (self._origin[0], idna_host, self._origin[2])
        # Credentials in the URL (``user:password@``): requests sends them as Basic auth.
        self._userinfo = "@" in self.base_url.partition("://")[2].partition("/")[0]
        # (headers mapping, its version, merges): valid while the session's headers are unchanged.
        self._merged: tuple[object, int, _MergedHeaders] | None = None
        self._pool_size = pool_size
        self._owns_session = session is None
        self._session = session if session is not None else self._new_session()
        self._session_pid = os.getpid()
        self._session_lock = threading.Lock()

    @property
    def session(self) -> requests.Session:
        """The HTTP session; a process forked after first use gets a fresh connection pool."""
        if self._owns_session and self._session_pid != os.getpid():
            with self._session_lock:
                if self._session_pid != os.getpid():
                    # Sockets inherited from the parent must not be shared with it.
                    self._session = self._new_session()
                    self._session_pid = os.getpid()
        return self._session

    def _new_session(self) -> requests.Session:
        session = requests.Session()
        session.headers = _WatchedHeaders(session.headers)
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._pool_size)
        self._adapter = adapter
        session.mount("https://", adapter)
        session.mount("http://", adapter)
        # The API sets no cookies we need; a shared jar would only leak state between visitors.
        session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
        # Read the proxy and CA settings of the environment once, not on every request (reading
        # them costs more than a loopback round trip).
        session.proxies.update(get_environ_proxies(self.base_url))
        ca_bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
        if ca_bundle:
            session.verify = ca_bundle
        session.trust_env = False
        self._verify = session.verify
        self._cookies = session.cookies
        self._connections = ConnectionPool(
            functools.partial(_tls_context, session.verify), max_idle=self._pool_size
        )
        return session

    def close(self) -> None:
        """Close the pooled connections."""
        self.session.close()
        if self._owns_session:
            self._connections.close()

    def __enter__(self) -> ExperienceClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"ExperienceClient(organization_id={self.organization_id!r}, "
            f"environment={self.environment!r}, base_url={redact_credentials(self.base_url)!r})"
        )

    # Single-profile endpoints -----------------------------------------------------------

    def create_profile(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        preflight: bool = False,
        locale: str | None = None,
        features: Sequence[str] | None = None,
        location: Mapping[str, Any] | None = None,
        ip: str | None = None,
        timeout: float | None = None,
    ) -> ProfileResult:
        """POST ``/profiles``: a new profile from ``events``, with its selected variants.

        ``timeout``, when given, replaces the client's budget for this call; a value that is
        not positive raises :class:`RequestTimeout` without sending anything.
        """
        request = self._mutation(
            "/profiles",
            events,
            preflight=preflight,
            locale=locale,
            features=features,
            location=location,
            ip=ip,
        )
        # Each stored create makes a new profile: one the server may have made already is not
        # asked for again (a preflight stores nothing, so it is).
        return self._mutate(request, timeout, preflight=preflight, repeatable=preflight)

    def update_profile(
        self,
        profile_id: str,
        events: Iterable[Mapping[str, Any]],
        *,
        preflight: bool = False,
        locale: str | None = None,
        features: Sequence[str] | None = None,
        location: Mapping[str, Any] | None = None,
        ip: str | None = None,
        timeout: float | None = None,
    ) -> ProfileResult:
        """POST ``/profiles/{id}``: add ``events`` to a profile (created when unknown).

        ``timeout``, when given, replaces the client's budget for this call.
        """
        request = self._mutation(
            f"/profiles/{_profile_id(profile_id)}",
            events,
            preflight=preflight,
            locale=locale,
            features=features,
            location=location,
            ip=ip,
        )
        return self._mutate(request, timeout, preflight=preflight)

    def begin_update_profile(
        self,
        profile_id: str,
        events: Iterable[Mapping[str, Any]],
        *,
        locale: str | None = None,
        features: Sequence[str] | None = None,
        location: Mapping[str, Any] | None = None,
        ip: str | None = None,
        timeout: float | None = None,
    ) -> PendingProfile:
        """:meth:`update_profile`, sent now and answered later: :meth:`PendingProfile.result`
        reads the answer (retrying as the call would), so the caller works while the API does.

        ``timeout`` bounds sending; the time :meth:`~PendingProfile.result` may wait is its
        own. A failure to send is raised by ``result``, like any other failure of the call.
        """
        path = f"/profiles/{_profile_id(profile_id)}"
        request = self._mutation(
            path,
            events,
            preflight=False,
            locale=locale,
            features=features,
            location=location,
            ip=ip,
        )
        deadline = self._budget(timeout, "POST", path)
        first: Callable[[Deadline], Any] | BaseException
        try:
            first = request.start(deadline)
        except ExperienceAPIError as exc:  # raised by result(), where the call is judged
            first = exc
        return PendingProfile(self, request, first)

    def get_profile(
        self, profile_id: str, *, locale: str | None = None, timeout: float | None = None
    ) -> ProfileResult:
        """GET ``/profiles/{id}``: the profile with its selected variants.

        ``timeout``, when given, replaces the client's budget for this call.
        """
        data = self._call(
            "GET",
            f"/profiles/{_profile_id(profile_id)}",
            params=self._query(locale=locale),
            timeout=timeout,
        )
        return self._profile_result(data, "get profile")

    def delete_profile(self, profile_id: str, *, timeout: float | None = None) -> None:
        """DELETE ``/profiles/{id}``.

        ``timeout``, when given, replaces the client's budget for this call.
        """
        self._call("DELETE", f"/profiles/{_profile_id(profile_id)}", timeout=timeout)

    # Batch endpoints --------------------------------------------------------------------

    def upsert_profiles(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        locale: str | None = None,
        max_workers: int = 1,
    ) -> list[Profile]:
        """POST ``/events`` (batch sync) as many times as the limits need.

        Every event needs an ``anonymousId`` (checked before anything is sent). Returns one
        profile per profile id answered, the latest answer winning, in order of first answer.
        With ``max_workers > 1`` requests run concurrently, but never two carrying events of
        the same profile.

        The client's ``timeout`` is the budget of each request of the batch (with its
        retries), not of the whole batch: the whole call may take up to ``timeout`` for each
        request it sends.
        """
        batches = self._plan(events)

        def send_batch(batch: EncodedBatch) -> list[Profile]:
            return self._profiles(self._post_encoded("/events", batch.parts, locale))

        profiles: dict[str, Profile] = {}
        for answer in run_batches(batches, send_batch, max_workers=max_workers):
            for profile in answer:
                profiles[profile.id] = profile
        return list(profiles.values())

    def send_events(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        locale: str | None = None,
        max_workers: int = 1,
    ) -> None:
        """POST ``/events`` like :meth:`upsert_profiles`, for senders that need no answer.

        The events are stored the same way and errors raise the same exceptions, but the
        profiles of the answer (one per profile of each request) are not turned into
        :class:`Profile` objects: background delivery would build and drop them, on a thread
        that shares the interpreter with the site's requests.
        """
        self._post_batches("/events", events, locale=locale, max_workers=max_workers)

    def send_encoded_events(self, parts: Sequence[bytes], *, locale: str | None = None) -> None:
        """POST ``/events`` once, its body joined from already encoded events.

        ``parts`` are events as :func:`~django_experience.api.encoding.encode_events` encodes
        them, for senders that size their batches by those bytes (background delivery): each
        event is encoded once. They are not checked or split here, so they must be one batch
        of :func:`~django_experience.api.batching.plan_batches`. Errors as in
        :meth:`send_events`; the answer is not read.
        """
        if parts:
            self._post_encoded("/events", parts, locale)

    def upsert_encoded_profiles(
        self, parts: Sequence[bytes], *, locale: str | None = None
    ) -> list[Profile]:
        """:meth:`upsert_profiles` of one batch already encoded, as for
        :meth:`send_encoded_events` (the bulk import checks its rows by encoding them)."""
        if not parts:
            return []
        profiles = {p.id: p for p in self._profiles(self._post_encoded("/events", parts, locale))}
        return list(profiles.values())

    def upsert_encoded_profile_ids(
        self, parts: Sequence[bytes], *, locale: str | None = None
    ) -> list[str]:
        """:meth:`upsert_encoded_profiles` for a caller that needs only the profiles' ids (the
        bulk import, which maps them): the rest of each profile is neither read nor checked.
        One id per profile, in the answer's order."""
        if not parts:
            return []
        return self._profile_ids(self._post_encoded("/events", parts, locale))

    def import_encoded_events(self, parts: Sequence[bytes], *, locale: str | None = None) -> None:
        """:meth:`import_events` of one batch already encoded, as for
        :meth:`send_encoded_events`."""
        if parts:
            self._post_encoded("/import/events", parts, locale)

    def _post_encoded(self, path: str, parts: Sequence[bytes], locale: str | None) -> Any:
        body = events_body(parts)
        return self._call("POST", path, params=self._query(locale=locale), json_body=body)

    def import_events(
        self,
        events: Iterable[Mapping[str, Any]],
        *,
        locale: str | None = None,
        max_workers: int = 1,
    ) -> None:
        """POST ``/import/events`` (batch async, processed later by the API), in batches.

        Same rules as :meth:`upsert_profiles`, ``timeout`` included: it bounds each request of
        the batch (with its retries), not the whole batch. The API answers before processing,
        so there is nothing to return.
        """
        self._post_batches("/import/events", events, locale=locale, max_workers=max_workers)

    def _post_batches(
        self,
        path: str,
        events: Iterable[Mapping[str, Any]],
        *,
        locale: str | None,
        max_workers: int,
    ) -> None:
        """POST ``events`` to a batch endpoint in API-sized requests; the answers unread."""

        def send_batch(batch: EncodedBatch) -> None:
            self._post_encoded(path, batch.parts, locale)

        run_batches(self._plan(events), send_batch, max_workers=max_workers)

    def _plan(self, events: Iterable[Mapping[str, Any]]) -> list[EncodedBatch]:
        """The requests of ``events``: within the API's limits and ``max_batch_bytes``, all
        encoded before the first is sent (an event that is not JSON raises InvalidData, and
        nothing was sent)."""
        return [
            part
            for batch in plan_batches(events)
            for part in split_encoded(EncodedBatch.of(batch), self.max_batch_bytes)
        ]

    # Plumbing ---------------------------------------------------------------------------

    def url(self, path: str) -> str:
        """The full URL of an endpoint path such as ``/profiles``."""
        return f"{self._prefix}{path}"

    @staticmethod
    def _query(*, locale: str | None = None, preflight: bool = False) -> dict[str, str]:
        params: dict[str, str] = {}
        if preflight:
            params["type"] = "preflight"
        if locale:
            params["locale"] = locale
        return params

    def _mutate(
        self, request: _Request, timeout: float | None, *, preflight: bool, repeatable: bool = True
    ) -> ProfileResult:
        """Make the create or update ``request`` within its budget, retried per the policy."""
        deadline = self._budget(timeout, request.method, request.path)
        data = call_with_retries(request, self.retry_policy, deadline, repeatable=repeatable)
        return self._profile_result(data, "preflight" if preflight else "profile update")

    def _mutation(
        self,
        path: str,
        events: Iterable[Mapping[str, Any]],
        *,
        preflight: bool,
        locale: str | None,
        features: Sequence[str] | None,
        location: Mapping[str, Any] | None,
        ip: str | None,
    ) -> _Request:
        document: dict[str, Any] = {"events": _events_list(events)}
        options: dict[str, Any] = {}
        if features:
            if isinstance(features, str):
                raise InvalidData("features must be a list of feature names, not a string")
            options["features"] = list(features)
            if "location" in features:
                document["events"] = [_resolving_location(e) for e in document["events"]]
        if location:
            options["location"] = dict(location)
        if options:
            document["options"] = options
        return self._request(
            "POST",
            path,
            params=self._query(locale=locale, preflight=preflight),
            text_body=document,
            headers={"X-Force-IP": ip} if ip else {},
        )

    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | bytes | None = None,
        text_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> Any:
        """One API call within the time budget, retried per the policy; returns ``data``.

        ``json_body`` is the document, or its JSON already encoded.
        """
        deadline = self._budget(timeout, method, path)
        request = self._request(
            method, path, params=params, json_body=json_body, text_body=text_body, headers=headers
        )
        return call_with_retries(request, self.retry_policy, deadline)

    def _request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        json_body: Mapping[str, Any] | bytes | None = None,
        text_body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> _Request:
        body: bytes | None = None
        content_type: str | None = None
        if json_body is not None:
            body = json_body if isinstance(json_body, bytes) else encode(json_body)
            content_type = "application/json"
        elif text_body is not None:
            # Like the official SDK: a JSON body sent as text/plain (no CORS preflight).
            body, content_type = encode(text_body), "text/plain"
        return _Request(self, method, path, params, body, content_type, headers)

    def _kept_alive_headers(
        self,
        session: requests.Session,
        content_type: str | None,
        headers: Mapping[str, str] | None,
    ) -> bytes:
        """The encoded headers of a kept-alive request, as ``requests`` would merge them.

        That is ``{**session.headers, **_request_headers(...)}``. The merge of the session's
        headers with the client's, per content type, is kept while the session's headers are
        unchanged: iterating them (a ``CaseInsensitiveDict``) and checking every header costs
        more than the rest of the call's header work. Headers replaced by another mapping are
        merged afresh on every call.
        """
        source = session.headers
        if not isinstance(source, _WatchedHeaders):
            return encode_headers(
                _decodable(
                    _merge(
                        cast("Mapping[str, str]", source), _request_headers(content_type, headers)
                    )
                )
            )
        version = source.version  # read before merging: a change while merging is not kept
        cached = self._merged
        if cached is None or cached[0] is not source or cached[1] != version:
            cached = self._merged = (source, version, {})
        merges = cached[2]
        merge = merges.get(content_type)
        if merge is None:
            merged = _decodable(
                _merge(cast("Mapping[str, str]", source), _request_headers(content_type, None))
            )
            names = frozenset(name.lower() for name in merged)
            merge = merges[content_type] = (merged, encode_headers(merged), names)
        merged, lines, names = merge
        if not headers:
            return lines
        if any(name.lower() in names for name in headers):
            return encode_headers(_decodable(_merge(merged, headers)))  # the call's value wins
        return lines + encode_headers(_decodable(headers))  # new names last, as a dict merge

    def _budget(self, timeout: float | None, method: str, path: str) -> Deadline:
        """The deadline of one call: the client's ``timeout``, or the call's own.

        A call's own ``timeout`` is typically "what is left" of a larger budget (one page's),
        so a value that is not positive (nothing left) raises :class:`RequestTimeout` at once,
        without sending anything, like a budget spent before the call started.
        """
        if timeout is None:
            return Deadline(self.timeout)
        if not timeout > 0:  # also NaN
            raise RequestTimeout(
                f"no time left for {method} {path}: the call's budget is {timeout!r}s"
            )
        if timeout == math.inf:  # no socket timeout can be that long
            raise ValueError("timeout must be a finite number of seconds, got inf")
        return Deadline(float(timeout))

    def _direct_route(self, session: requests.Session, url: str) -> bool:
        """Whether this call may take the kept-alive ``http11`` path.

        Only for the session this client built, untouched: a caller's session, or any setting
        of the session's that path does not implement (proxies, auth, ``verify`` changed, a
        client certificate, query ``params``, hooks, cookies, ``trust_env`` turned back on),
        another adapter mounted, or ``HTTPAdapter.send`` patched (as HTTP mocking libraries do
        in tests) all take the ``requests`` path, and so does a ``base_url`` with credentials
        (``user:password@``, which ``requests`` sends as Basic auth). (``max_redirects`` and
        ``stream`` change nothing: neither path follows redirects, and both read the whole
        answer.)
        """
        if not self._owns_session or self._userinfo or session.proxies:
            return False
        if session.auth is not None:
            return False
        if session.verify is not self._verify or HTTPAdapter.send is not _ADAPTER_SEND:
            return False
        if session.cert is not None or session.params or session.trust_env:
            return False
        if any(session.hooks.values()) or _has_cookies(session.cookies, self._cookies):
            return False
        return session.get_adapter(url) is self._adapter

    @staticmethod
    def _profile_result(data: Any, what: str) -> ProfileResult:
        try:
            return ProfileResult.from_json(data, owned=True)  # decoded here: no one else holds it
        except ValueError as exc:
            raise MalformedResponse(
                f"the {what} answer is not the documented shape: {exc}"
            ) from exc

    @staticmethod
    def _profile_ids(data: Any) -> list[str]:
        profiles = data.get("profiles") if isinstance(data, dict) else None
        if not isinstance(profiles, list):
            raise MalformedResponse(
                "the batch upsert answer is not the documented shape: data.profiles must be a list"
            )
        ids: dict[str, None] = {}
        for index, item in enumerate(profiles):
            profile_id = item.get("id") if isinstance(item, dict) else None
            if not isinstance(profile_id, str) or not profile_id:
                raise MalformedResponse(
                    "the batch upsert answer is not the documented shape: "
                    f"data.profiles[{index}].id must be a non-empty string"
                )
            ids[profile_id] = None
        return list(ids)

    @staticmethod
    def _profiles(data: Any) -> list[Profile]:
        try:
            if not isinstance(data, dict) or not isinstance(data.get("profiles"), list):
                raise ValueError("data.profiles must be a list")
            return [
                Profile.from_json(item, f"data.profiles[{index}]", owned=True)
                for index, item in enumerate(data["profiles"])
            ]
        except ValueError as exc:
            raise MalformedResponse(
                f"the batch upsert answer is not the documented shape: {exc}"
            ) from exc


__all__ = ["DEFAULT_BASE_URL", "ExperienceClient"]
