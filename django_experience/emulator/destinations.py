"""In-memory emulators of the two profile destinations, as WSGI applications.

- ``experiture_app`` serves ``/experiture/public/v1/profiles/upsert`` (POST) and
  ``/experiture/public/v1/metadata/objects/profiles`` (GET), with the documented envelope,
  error codes and ``correlationId``.
- ``releva_app`` serves ``/releva/api/v0/profiles`` (POST): ``202 {}`` on success,
  ``{"message": ...}`` on errors.

Both expect the FULL path, prefix included (``SCRIPT_NAME + PATH_INFO``, so they work whether a
mounting app strips the prefix into ``SCRIPT_NAME`` or not). Any non-empty bearer token is
accepted unless one is configured. What they accept is stored; ``snapshot()`` returns it and
``reset()`` forgets it (and the configuration). ``MOUNTS`` maps each prefix to its app.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from django_experience.destinations.errors import (
    FORBIDDEN,
    RATE_LIMITED,
    REQUEST_INVALID,
    SCHEMA_MISMATCH,
    UNAUTHORIZED,
)
from django_experience.emulator.validation import refuse_constant

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

EXPERITURE_PREFIX = "/experiture/public/v1"
RELEVA_PREFIX = "/releva/api/v0"
MAX_BODY_BYTES = 5 * 1024 * 1024
REASONS = {
    200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
    422: "Unprocessable Entity", 429: "Too Many Requests", 500: "Internal Server Error",
    503: "Service Unavailable",
}
EXPERITURE_CODES = {
    400: REQUEST_INVALID, 401: UNAUTHORIZED, 403: FORBIDDEN, 422: SCHEMA_MISMATCH,
    429: RATE_LIMITED,
}


@dataclass
class DestinationConfig:
    """How the emulated platforms behave.

    ``experiture_token`` / ``releva_secret_key``: the only accepted bearer token (``None``:
    any non-empty one). ``experiture_read_only_tokens``: tokens without write access (403).
    ``experiture_schema``: the ``profiles`` field names (or name -> type); unknown fields
    answer 422. ``None`` accepts any field, and the metadata lists the fields seen so far.
    ``experiture_primary_key``: the field matched on when no ``matchKey`` is sent.
    """

    experiture_token: str | None = None
    experiture_read_only_tokens: frozenset[str] = frozenset()
    experiture_schema: dict[str, str] | None = None
    experiture_primary_key: str = "email"
    releva_secret_key: str | None = None


@dataclass
class _Fault:
    status: int
    remaining: int
    retry_after: str | None


@dataclass
class DestinationStore:
    """Thread-safe storage and configuration shared by both emulated platforms."""

    config: DestinationConfig = field(default_factory=DestinationConfig)
    experiture: list[dict[str, Any]] = field(default_factory=list)
    releva: list[dict[str, Any]] = field(default_factory=list)
    faults: dict[str, _Fault] = field(default_factory=dict)
    lock: threading.RLock = field(default_factory=threading.RLock)

    def reset(self, platform: str | None = None) -> None:
        """Forget stored records, configuration and scripted errors (of one platform, or of
        both). Configuration is shared, so it returns to the defaults either way."""
        with self.lock:
            self.config = DestinationConfig()
            for name, records in (("experiture", self.experiture), ("releva", self.releva)):
                if platform in (None, name):
                    records.clear()
                    self.faults.pop(name, None)

    def snapshot(self) -> dict[str, list[dict[str, Any]]]:
        """Copies of what each platform stored: ``{"experiture": [...], "releva": [...]}``."""
        with self.lock:
            return copy.deepcopy({"experiture": self.experiture, "releva": self.releva})

    def configure(
        self,
        *,
        experiture_token: str | None = None,
        experiture_read_only_tokens: Iterable[str] = (),
        experiture_schema: Iterable[str] | Mapping[str, str] | None = None,
        experiture_primary_key: str = "email",
        releva_secret_key: str | None = None,
    ) -> None:
        """Replace the configuration (see :class:`DestinationConfig`)."""
        schema: dict[str, str] | None = None
        if isinstance(experiture_schema, Mapping):
            schema = {str(name): str(kind) for name, kind in experiture_schema.items()}
        elif experiture_schema is not None:
            schema = {str(name): "string" for name in experiture_schema}
        with self.lock:
            self.config = DestinationConfig(
                experiture_token=experiture_token,
                experiture_read_only_tokens=frozenset(experiture_read_only_tokens),
                experiture_schema=schema,
                experiture_primary_key=experiture_primary_key,
                releva_secret_key=releva_secret_key,
            )

    def inject_errors(
        self, platform: str, *, status: int = 429, times: int = 1, retry_after: str | None = None
    ) -> None:
        """Make the next ``times`` authorized requests to ``platform`` ("experiture" or
        "releva") answer ``status`` with that platform's error body (and ``Retry-After``)."""
        if platform not in ("experiture", "releva"):
            raise ValueError(f"unknown platform {platform!r}")
        with self.lock:
            self.faults[platform] = _Fault(status, times, retry_after)

    def take_fault(self, platform: str) -> _Fault | None:
        with self.lock:
            fault = self.faults.get(platform)
            if fault is None or fault.remaining <= 0:
                return None
            fault.remaining -= 1
            return fault


class _Refusal(Exception):
    """An error answer: status, message and, for Experiture, the code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def _path(environ: Mapping[str, Any]) -> str:
    return str(environ.get("SCRIPT_NAME", "")) + str(environ.get("PATH_INFO", ""))


def _bearer(environ: Mapping[str, Any]) -> str | None:
    header = str(environ.get("HTTP_AUTHORIZATION", ""))
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _read_json(environ: Mapping[str, Any]) -> Any:
    content_type = str(environ.get("CONTENT_TYPE", "")).split(";")[0].strip().lower()
    if content_type != "application/json":
        raise _Refusal(400, "Content-Type must be application/json")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise _Refusal(400, "Content-Length is not a number") from None
    if length > MAX_BODY_BYTES:
        raise _Refusal(413, f"body larger than {MAX_BODY_BYTES} bytes")
    raw = environ["wsgi.input"].read(length) if length > 0 else b""
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=refuse_constant)
    except (UnicodeDecodeError, ValueError):
        raise _Refusal(400, "body is not valid JSON") from None


def _respond(
    start_response: StartResponse, status: int, body: Any, headers: Mapping[str, str]
) -> list[bytes]:
    payload = json.dumps(body).encode("utf-8")
    start_response(
        f"{status} {REASONS.get(status, 'Error')}",
        [
            ("Content-Type", "application/json"),
            ("Content-Length", str(len(payload))),
            *headers.items(),
        ],
    )
    return [payload]


# Written from the Experiture document ("ISO 8601 with timezone ... rejects naive datetimes"),
# not taken from the client: the emulator is what the client's own check is tested against.
_DATE_AND_TIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
_WITH_ZONE = re.compile(r"(?:[Zz]|[+-]\d{2}(?::?\d{2})?)$")


def _naive_datetime_fields(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        text = value.strip()
        naive = bool(_DATE_AND_TIME.match(text)) and not _WITH_ZONE.search(text[16:])
        return [where] if naive else []
    if isinstance(value, dict):
        return [name for key, item in value.items()
                for name in _naive_datetime_fields(item, f"{where}.{key}")]
    if isinstance(value, list):
        return [name for index, item in enumerate(value)
                for name in _naive_datetime_fields(item, f"{where}[{index}]")]
    return []


class ExperitureApp:
    """The Experiture Profiles API (and the profiles metadata) over a :class:`DestinationStore`."""

    def __init__(self, store: DestinationStore) -> None:
        self.store = store

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        correlation_id = str(uuid.uuid4())
        headers = {"X-Correlation-Id": correlation_id}
        try:
            status, data = self._handle(environ)
        except _Refusal as refusal:
            error: dict[str, Any] = {"message": refusal.message}
            if refusal.status in EXPERITURE_CODES:
                error = {"code": EXPERITURE_CODES[refusal.status], **error}
            body = {"success": False, "error": error, "correlationId": correlation_id}
            return _respond(start_response, refusal.status, body,
                            {**headers, **refusal.headers})
        body = {"success": True, "data": data, "correlationId": correlation_id}
        return _respond(start_response, status, body, headers)

    def _handle(self, environ: Mapping[str, Any]) -> tuple[int, dict[str, Any]]:
        path = _path(environ).rstrip("/")
        method = str(environ.get("REQUEST_METHOD", "GET")).upper()
        routes = {
            EXPERITURE_PREFIX + "/profiles/upsert": "POST",
            EXPERITURE_PREFIX + "/metadata/objects/profiles": "GET",
        }
        if path not in routes:
            raise _Refusal(404, f"no such endpoint: {path}")
        if method != routes[path]:
            raise _Refusal(405, f"{path} accepts {routes[path]} only",
                           {"Allow": routes[path]})
        config = self.store.config
        token = _bearer(environ)
        if token is None:
            raise _Refusal(401, "missing bearer token")
        if config.experiture_token is not None and token != config.experiture_token:
            raise _Refusal(401, "invalid bearer token")
        if method == "GET":
            return 200, self._schema()
        if token in config.experiture_read_only_tokens:
            raise _Refusal(403, "token lacks cdp:profiles:write scope")
        fault = self.store.take_fault("experiture")
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            raise _Refusal(fault.status, "rate limit exceeded" if fault.status == 429
                           else "emulated failure", extra)
        return 200, self._upsert(_read_json(environ))

    def _schema(self) -> dict[str, Any]:
        config = self.store.config
        if config.experiture_schema is not None:
            fields = dict(config.experiture_schema)
        else:
            with self.store.lock:
                seen = {name for record in self.store.experiture for name in record}
            fields = {name: "string" for name in sorted(seen | {config.experiture_primary_key})}
        return {
            "objectName": "profiles",
            "primaryKey": config.experiture_primary_key,
            "fields": [{"name": name, "type": kind} for name, kind in fields.items()],
        }

    def _upsert(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _Refusal(400, "body must be a JSON object")
        unknown = sorted(set(body) - {"record", "matchKey"})
        if unknown:
            raise _Refusal(400, f"unknown body field(s): {', '.join(unknown)}")
        record = body.get("record")
        if not isinstance(record, dict):
            raise _Refusal(400, "record is required and must be an object")
        if not record:
            raise _Refusal(400, "record must contain at least one property")
        config = self.store.config
        match_key = body.get("matchKey", None)
        if "matchKey" in body and (not isinstance(match_key, str) or not match_key):
            raise _Refusal(400, "matchKey must be a non-empty string")
        naive = [name for key, value in record.items()
                 for name in _naive_datetime_fields(value, key)]
        if naive:
            raise _Refusal(400, f"naive datetime (no time zone) in: {', '.join(naive)}")
        if config.experiture_schema is not None:
            missing = sorted(set(record) - set(config.experiture_schema))
            if match_key is not None and match_key not in config.experiture_schema:
                missing = sorted({*missing, match_key})
            if missing:
                raise _Refusal(422, f"field(s) not on object profiles: {', '.join(missing)}")
        key = match_key or config.experiture_primary_key
        value = record.get(key)
        if value is None:
            raise _Refusal(400, f"record has no value for match key {key!r}")
        with self.store.lock:
            for stored in self.store.experiture:
                if stored.get(key) == value:
                    stored.update(record)  # missing fields unchanged, null clears
                    break
            else:
                self.store.experiture.append(dict(record))
        return {
            "operation": "upsert",
            "objectName": "profiles",
            "accepted": True,
            "acceptedAt": _now(),
            "acceptedRecords": 1,
            "matchKey": key,
        }


# --- Releva's profile object, checked as its document describes it ---------------------------
# Written from releva-profile-upsert-api.txt on its own, NOT with the client's validation
# (django_experience.destinations.releva), so that tests against the emulator catch a client
# that sends what the platform would refuse.

RELEVA_CONSENTS = frozenset({"legitimateInterest", "privacyPolicy", "mandatoryCookies",
                             "cookiesPolicy"})
_DIGITS = frozenset("0123456789")
_RELEVA_DATE_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?"
    r"(?:Z|[+-](\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
_RELEVA_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)


def _is_text(value: Any) -> bool:
    return isinstance(value, str)


def _is_email(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    local, at, domain = value.partition("@")
    return bool(at and local and domain) and "@" not in domain and not any(
        char.isspace() for char in value
    )


def _is_phone(value: Any) -> bool:
    # 'Phone numbers must start with "+" followed by a sequence of numbers.'
    return isinstance(value, str) and len(value) > 1 and value[0] == "+" and set(
        value[1:]
    ) <= _DIGITS


def _is_calendar_date(year: str, month: str, day: str) -> bool:
    try:
        dt.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def _is_date_time(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    match = _RELEVA_DATE_TIME.fullmatch(value)
    if match is None:
        return False
    year, month, day, hour, minute, second, zone_hours, zone_minutes = match.groups()
    return (_is_calendar_date(year, month, day) and int(hour) < 24 and int(minute) < 60
            and int(second or 0) < 60 and int(zone_hours or 0) < 24
            and int(zone_minutes or 0) < 60)


def _is_date(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    match = _RELEVA_DATE.fullmatch(value)
    return match is not None and _is_calendar_date(*match.groups())


def _is_string_array(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_location(value: Any) -> bool:
    return (isinstance(value, dict) and set(value) == {"lat", "lon"}
            and _is_number(value["lat"]) and -90 <= value["lat"] <= 90
            and _is_number(value["lon"]) and -180 <= value["lon"] <= 180)


def _is_custom(value: Any) -> bool:
    # The document shows typed lists: {"string": [{"key": "gender", "values": ["M"]}]}.
    if not isinstance(value, dict):
        return False
    for kind, entries in value.items():
        if not isinstance(entries, list):
            return False
        for entry in entries:
            if not (isinstance(entry, dict) and set(entry) == {"key", "values"}
                    and isinstance(entry["key"], str) and entry["key"]
                    and isinstance(entry["values"], list)):
                return False
            if kind == "string" and not _is_string_array(entry["values"]):
                return False
    return True


RELEVA_FIELDS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "email": (_is_email, "must be an email address"),
    "firstName": (_is_text, "must be a string"),
    "lastName": (_is_text, "must be a string"),
    "phoneNumber": (_is_phone, 'must start with "+" followed by a sequence of numbers'),
    "consent": (lambda value: isinstance(value, str) and value in RELEVA_CONSENTS,
                "must be one of " + ", ".join(sorted(RELEVA_CONSENTS))),
    "registeredAt": (_is_date_time, "must be an ISO-8601 date and time"),
    "subscribedAt": (_is_date_time, "must be an ISO-8601 date and time"),
    "birthday": (_is_date, "must be an ISO-8601 date without time"),
    "unsubscribeLink": (_is_text, "must be a string"),
    "custom": (_is_custom, "must be an object of typed lists of {key, values}"),
    "addTags": (_is_string_array, "must be an array of strings"),
    "removeTags": (_is_string_array, "must be an array of strings"),
    "subscriptions": (_is_string_array, "must be an array of strings"),
    "location": (_is_location, "must be {lat, lon} in decimal degrees"),
}


def releva_profile(profile: Any) -> dict[str, Any]:
    """The profile as stored, or ``ValueError`` saying what the document says is wrong.
    ``null`` fields are left out: the document gives ``null`` no effect."""
    if not isinstance(profile, dict):
        raise ValueError("must be an object")
    checked: dict[str, Any] = {}
    for name, value in profile.items():
        if name not in RELEVA_FIELDS:
            raise ValueError(f"{name!r} is not a field of the profile object")
        if value is None:
            continue
        check, rule = RELEVA_FIELDS[name]
        if not check(value):
            raise ValueError(f"{name} {rule}")
        checked[name] = value
    if "email" not in checked and "phoneNumber" not in checked:
        raise ValueError("email or phoneNumber is required")
    return checked


class RelevaApp:
    """The Releva Profile Upsert API over a :class:`DestinationStore`."""

    def __init__(self, store: DestinationStore) -> None:
        self.store = store

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        try:
            self._handle(environ)
        except _Refusal as refusal:
            return _respond(start_response, refusal.status, {"message": refusal.message},
                            refusal.headers)
        return _respond(start_response, 202, {}, {})

    def _handle(self, environ: Mapping[str, Any]) -> None:
        path = _path(environ).rstrip("/")
        if path != RELEVA_PREFIX + "/profiles":
            raise _Refusal(404, f"no such endpoint: {path}")
        if str(environ.get("REQUEST_METHOD", "GET")).upper() != "POST":
            raise _Refusal(405, f"{path} accepts POST only", {"Allow": "POST"})
        token = _bearer(environ)
        secret = self.store.config.releva_secret_key
        if token is None or (secret is not None and token != secret):
            raise _Refusal(401, "Unauthorized: pass your secret key as 'Authorization: Bearer "
                                "<secretKey>'")
        fault = self.store.take_fault("releva")
        if fault is not None:
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            raise _Refusal(fault.status, "Too many requests" if fault.status == 429
                           else "Emulated failure", extra)
        entries = self._validate(_read_json(environ))
        with self.store.lock:
            for profile, changed in entries:
                self._store(profile, changed)

    @staticmethod
    def _validate(body: Any) -> list[tuple[dict[str, Any], bool]]:
        if not isinstance(body, dict) or not isinstance(body.get("profiles"), list):
            raise _Refusal(400, "body must be an object with a 'profiles' list")
        if not body["profiles"]:
            raise _Refusal(400, "profiles must not be empty")
        entries = []
        for index, entry in enumerate(body["profiles"]):
            where = f"profiles[{index}]"
            if not isinstance(entry, dict):
                raise _Refusal(400, f"{where} must be an object")
            unknown = sorted(set(entry) - {"profile", "subscribedAtChanged"})
            if unknown:
                raise _Refusal(400, f"{where} has unknown field(s): {', '.join(unknown)}")
            if not isinstance(entry.get("subscribedAtChanged"), bool):
                raise _Refusal(400, f"{where}.subscribedAtChanged must be a boolean")
            try:
                profile = releva_profile(entry.get("profile"))
            except ValueError as problem:
                raise _Refusal(400, f"{where}.profile: {problem}") from None
            entries.append((profile, entry["subscribedAtChanged"]))
        return entries

    def _store(self, profile: dict[str, Any], subscribed_at_changed: bool) -> None:
        stored = self._find(profile)
        if stored is None:
            stored = {}
            self.store.releva.append(stored)
        for name, value in profile.items():
            if name in ("addTags", "removeTags"):
                continue
            stored[name] = value  # custom and subscriptions are replaced as a whole
        tags = list(stored.get("tags", []))
        tags += [tag for tag in profile.get("addTags", []) if tag not in tags]
        removed = set(profile.get("removeTags", []))
        if tags or removed or "tags" in stored:
            stored["tags"] = [tag for tag in tags if tag not in removed]
        stored["subscribedAtChanged"] = subscribed_at_changed

    def _find(self, profile: dict[str, Any]) -> dict[str, Any] | None:
        for key in ("email", "phoneNumber"):
            value = profile.get(key)
            if value:
                for stored in self.store.releva:
                    if stored.get(key) == value:
                        return stored
        return None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


store = DestinationStore()
experiture_app: WSGIApp = ExperitureApp(store)
releva_app: WSGIApp = RelevaApp(store)
MOUNTS: dict[str, WSGIApp] = {"/experiture/": experiture_app, "/releva/": releva_app}


def _platform_snapshot(platform: str) -> list[dict[str, Any]]:
    return store.snapshot()[platform]


def _register_mounts() -> None:
    """Serve both platforms in every emulator server, each with its own reset and snapshot
    (so the control API shows ``{"experiture": [...], "releva": [...]}``)."""
    try:
        from django_experience.emulator.mounts import register_mount
    except ImportError:  # the emulator server is not installed: the apps still work alone
        return
    for platform, prefix in (("experiture", "/experiture/"), ("releva", "/releva/")):
        register_mount(
            prefix,
            MOUNTS[prefix],
            reset=functools.partial(store.reset, platform),
            snapshot=functools.partial(_platform_snapshot, platform),
        )


_register_mounts()


def reset() -> None:
    """Forget everything the emulated destinations stored, and their configuration."""
    store.reset()


def snapshot() -> dict[str, list[dict[str, Any]]]:
    """``{"experiture": [...records...], "releva": [...profiles...]}``."""
    return store.snapshot()


def configure(**options: Any) -> None:
    """Replace the configuration; see :meth:`DestinationStore.configure`."""
    store.configure(**options)


def inject_errors(
    platform: str, *, status: int = 429, times: int = 1, retry_after: str | None = None
) -> None:
    """Script error answers; see :meth:`DestinationStore.inject_errors`."""
    store.inject_errors(platform, status=status, times=times, retry_after=retry_after)


__all__ = [
    "MOUNTS",
    "DestinationConfig",
    "DestinationStore",
    "ExperitureApp",
    "RelevaApp",
    "configure",
    "experiture_app",
    "inject_errors",
    "releva_app",
    "reset",
    "snapshot",
]
