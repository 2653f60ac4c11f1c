"""Client of the Releva Profile Upsert API: send profiles in batches.

``POST {url}/profiles`` with ``{"profiles": [{"profile": ..., "subscribedAtChanged": ...}]}``
and the secret key as bearer token; success is ``202`` with ``{}``. Each profile is checked
against the documented rules before sending; an invalid profile is reported with its index and
reason and the valid ones are still sent. The API documents no batch limit; batches default to
100 profiles.

The document marks this API as meant for backfills (it emits backfill events, which cannot
trigger campaigns).
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import requests

from django_experience.destinations.errors import (
    DestinationError,
    InvalidRecord,
    RequestInvalid,
    SchemaMismatch,
    error_for,
)
from django_experience.destinations.http import (
    Answer,
    JSONTransport,
    RetryPolicy,
    bearer_headers,
    parse_retry_after,
)
from django_experience.destinations.values import (
    format_datetime,
    parse_date,
    parse_datetime,
    with_iso_offset,
)

DEFAULT_URL = "https://releva.ai/api/v0"
PROFILES_PATH = "/profiles"
DEFAULT_BATCH_SIZE = 100

CONSENT_VALUES = ("legitimateInterest", "privacyPolicy", "mandatoryCookies", "cookiesPolicy")
# The only typed list the document describes for ``custom``.
CUSTOM_TYPES = ("string",)
PROFILE_FIELDS = (
    "email",
    "firstName",
    "lastName",
    "phoneNumber",
    "consent",
    "registeredAt",
    "subscribedAt",
    "birthday",
    "unsubscribeLink",
    "custom",
    "addTags",
    "removeTags",
    "subscriptions",
    "location",
)
# Our usual trait names for the documented fields, used when no ``fields`` mapping is given.
TRAIT_ALIASES = {
    "first_name": "firstName",
    "firstname": "firstName",
    "last_name": "lastName",
    "lastname": "lastName",
    "phone": "phoneNumber",
    "phone_number": "phoneNumber",
    "registered_at": "registeredAt",
    "date_joined": "registeredAt",
    "subscribed_at": "subscribedAt",
    "unsubscribe_link": "unsubscribeLink",
}
CUSTOM_PREFIX = "custom."

# Matched with fullmatch: "$" would also match before a final newline ("+123\n").
EMAIL_PATTERN = re.compile(r"[^@\s]+@[^@\s]+")
PHONE_PATTERN = re.compile(r"\+[0-9]+")

Scalar = (str, int, float, bool, dt.date, Decimal, uuid.UUID)


# --- validation ---------------------------------------------------------------------------


def _string(value: Any, name: str) -> str:
    if not isinstance(value, str):
        raise InvalidRecord(f"{name} must be a string, not {type(value).__name__}", field=name)
    return value


def _email(value: Any, name: str) -> str:
    text = _string(value, name)
    if not EMAIL_PATTERN.fullmatch(text):
        raise InvalidRecord(f"{name} {text!r} is not an email address", field=name)
    return text


def _phone(value: Any, name: str) -> str:
    text = _string(value, name)
    if not PHONE_PATTERN.fullmatch(text):
        raise InvalidRecord(
            f"{name} {text!r} must be '+' followed by digits only, like +49875345976", field=name
        )
    return text


def _consent(value: Any, name: str) -> str:
    if value not in CONSENT_VALUES:
        raise InvalidRecord(
            f"{name} {value!r} must be one of {', '.join(CONSENT_VALUES)}", field=name
        )
    return str(value)


def _wire_datetime(value: dt.datetime) -> str:
    """``value`` in the document's form, ``2019-08-18T05:48:42.419Z``: a ``T``, seconds, a
    fraction only when there is one (milliseconds, or microseconds when they count), and ``Z``
    for UTC or a ``+hh:mm`` offset (none for a naive value)."""
    value = with_iso_offset(value)
    if not value.microsecond:
        timespec = "seconds"
    elif value.microsecond % 1000:
        timespec = "microseconds"
    else:
        timespec = "milliseconds"
    text = value.isoformat(timespec=timespec)
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _datetime(value: Any, name: str) -> str:
    # Strings are parsed and written again: ISO 8601 spellings Releva need not take ("z", a
    # space for the T, "+0200", "+02", a comma before the fraction, no seconds) are sent in the
    # document's form, like datetime objects.
    parsed = value if isinstance(value, dt.datetime) else (
        parse_datetime(value) if isinstance(value, str) else None
    )
    if parsed is not None:
        try:
            return _wire_datetime(parsed)
        except OverflowError:  # in UTC, before year 1 or after 9999
            pass
    raise InvalidRecord(f"{name} {value!r} must be an ISO 8601 date and time", field=name)


def _date(value: Any, name: str) -> str:
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, str) and parse_date(value) is not None:
        return value
    raise InvalidRecord(
        f"{name} {value!r} must be an ISO 8601 date without time (YYYY-MM-DD)", field=name
    )


def _string_list(value: Any, name: str) -> list[str]:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InvalidRecord(f"{name} must be a list of strings", field=name)
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise InvalidRecord(
                f"{name}[{index}] must be a string, not {type(item).__name__}", field=name
            )
    return list(value)


def _coordinate(location: Mapping[str, Any], key: str, limit: float, name: str) -> float:
    value = location.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidRecord(f"{name}.{key} must be a number, not {value!r}", field=name)
    if not -limit <= float(value) <= limit:
        raise InvalidRecord(f"{name}.{key} {value!r} is out of range", field=name)
    return float(value)


def _location(value: Any, name: str) -> dict[str, float]:
    if not isinstance(value, Mapping):
        raise InvalidRecord(f"{name} must be an object with lat and lon", field=name)
    extra = sorted(set(value) - {"lat", "lon"})
    if extra:
        raise InvalidRecord(f"{name} has unknown key(s) {', '.join(extra)}", field=name)
    return {
        "lat": _coordinate(value, "lat", 90.0, name),
        "lon": _coordinate(value, "lon", 180.0, name),
    }


def _custom(value: Any, name: str) -> dict[str, list[dict[str, Any]]]:
    if not isinstance(value, Mapping):
        raise InvalidRecord(
            f'{name} must be typed lists like {{"string": [{{"key": ..., "values": [...]}}]}}',
            field=name,
        )
    result: dict[str, list[dict[str, Any]]] = {}
    for kind, entries in value.items():
        if kind not in CUSTOM_TYPES:
            raise InvalidRecord(
                f"{name} type {kind!r} is not documented (only {', '.join(CUSTOM_TYPES)})",
                field=name,
            )
        if isinstance(entries, (str, bytes)) or not isinstance(entries, Sequence):
            raise InvalidRecord(f"{name}.{kind} must be a list of entries", field=name)
        checked = []
        for index, entry in enumerate(entries):
            where = f"{name}.{kind}[{index}]"
            if not isinstance(entry, Mapping) or set(entry) != {"key", "values"}:
                raise InvalidRecord(f"{where} must be {{\"key\": ..., \"values\": [...]}}",
                                    field=name)
            key = entry["key"]
            if not isinstance(key, str) or not key:
                raise InvalidRecord(f"{where}.key must be a non-empty string", field=name)
            try:
                values = _string_list(entry["values"], f"{where}.values")
            except InvalidRecord as problem:
                raise InvalidRecord(problem.message, field=name) from None
            checked.append({"key": key, "values": values})
        result[kind] = checked
    return result


CHECKS: dict[str, Callable[[Any, str], Any]] = {
    "email": _email,
    "firstName": _string,
    "lastName": _string,
    "phoneNumber": _phone,
    "consent": _consent,
    "registeredAt": _datetime,
    "subscribedAt": _datetime,
    "birthday": _date,
    "unsubscribeLink": _string,
    "custom": _custom,
    "addTags": _string_list,
    "removeTags": _string_list,
    "subscriptions": _string_list,
    "location": _location,
}


def prepare_profile(profile: Any) -> dict[str, Any]:
    """The wire form of one profile, or :class:`InvalidRecord` naming the field and reason.

    ``None`` values are left out: the document gives ``null`` no effect (it says so for
    ``subscriptions``; ``subscriptions: []`` is what clears them).
    """
    if not isinstance(profile, Mapping):
        raise InvalidRecord(f"profile must be an object, not {type(profile).__name__}")
    prepared: dict[str, Any] = {}
    for name, value in profile.items():
        check = CHECKS.get(name)
        if check is None:
            raise InvalidRecord(
                f"unknown field {name!r} (documented: {', '.join(PROFILE_FIELDS)})", field=name
            )
        if value is not None:
            prepared[name] = check(value, name)
    if not prepared.get("email") and not prepared.get("phoneNumber"):
        raise InvalidRecord("email or phoneNumber is required", field="email")
    return prepared


# --- mapping our traits ---------------------------------------------------------------------


def _custom_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dt.datetime):
        return format_datetime(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _custom_values(value: Any) -> list[str] | None:
    """A trait as the ``values`` of a custom entry, or ``None`` when it is not scalar data."""
    if isinstance(value, Scalar):
        return [_custom_value(value)]
    if isinstance(value, (list, tuple)) and value and all(
        isinstance(item, Scalar) for item in value
    ):
        return [_custom_value(item) for item in value]
    return None


def profile_from_traits(
    traits: Mapping[str, Any], fields: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Releva profile for a profile's traits.

    Without ``fields``: traits named like a documented field (``email``, ``firstName``,
    ``lastName``, ``phoneNumber``, ``registeredAt``, ``birthday``, ...) or one of the usual
    aliases (``first_name``, ``phone``, ``date_joined``, ...) fill that field; every other
    scalar trait (or list of scalars) becomes a ``custom.string`` entry keyed by the trait name.
    With ``fields`` (our trait name -> Releva field name, or ``"custom.<key>"``): only the named
    traits are taken. ``None`` traits are left out.
    """
    profile: dict[str, Any] = {}
    custom: list[dict[str, Any]] = []
    if fields is None:
        # Exact field names first, so they win over an alias of the same field.
        ordered = sorted(traits.items(), key=lambda item: item[0] not in PROFILE_FIELDS)
        for name, value in ordered:
            if value is None:
                continue
            target = name if name in PROFILE_FIELDS else TRAIT_ALIASES.get(name)
            if target is not None:
                profile.setdefault(target, value)
                continue
            values = _custom_values(value)
            if values is not None:
                custom.append({"key": name, "values": values})
    else:
        for source, target in fields.items():
            if not isinstance(target, str) or not (
                target in PROFILE_FIELDS or (target.startswith(CUSTOM_PREFIX) and
                                             len(target) > len(CUSTOM_PREFIX))
            ):
                raise ValueError(
                    f"fields[{source!r}] = {target!r} is neither a Releva profile field "
                    f"({', '.join(PROFILE_FIELDS)}) nor 'custom.<key>'"
                )
            value = traits.get(source)
            if value is None:
                continue
            if target.startswith(CUSTOM_PREFIX):
                values = _custom_values(value)
                if values is None:
                    raise ValueError(f"trait {source!r} is not scalar data for {target!r}")
                custom.append({"key": target[len(CUSTOM_PREFIX):], "values": values})
            else:
                profile[target] = value
    if custom:
        existing = profile.get("custom")
        if isinstance(existing, Mapping):
            merged = {kind: list(entries) for kind, entries in existing.items()}
            merged.setdefault("string", []).extend(custom)
            profile["custom"] = merged
        else:
            profile["custom"] = {"string": custom}
    return profile


# --- results and the client -----------------------------------------------------------------


@dataclass(frozen=True)
class RejectedProfile:
    """A profile refused before sending: its index in the input, the field and the reason."""

    index: int
    field: str | None
    reason: str


@dataclass(frozen=True)
class FailedBatch:
    """A batch the API did not accept (or that was not sent after a fatal error)."""

    indexes: tuple[int, ...]
    error: DestinationError


@dataclass(frozen=True)
class RelevaUpsertResult:
    """What happened to each input profile, by index."""

    sent: tuple[int, ...]
    rejected: tuple[RejectedProfile, ...]
    failures: tuple[FailedBatch, ...]

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failures

    @property
    def rejected_indexes(self) -> tuple[int, ...]:
        return tuple(item.index for item in self.rejected)

    @property
    def failed_indexes(self) -> tuple[int, ...]:
        return tuple(index for batch in self.failures for index in batch.indexes)


def parse_error(answer: Answer) -> DestinationError:
    """The error for a Releva error answer (``{"message": ...}``)."""
    body = answer.body if isinstance(answer.body, dict) else {}
    message = body.get("message")
    if not isinstance(message, str) or not message:
        message = answer.text.strip()[:200] or f"Releva answered {answer.status}"
    correlation = answer.headers.get("X-Request-Id") or answer.headers.get("X-Correlation-Id")
    return error_for(
        answer.status, None, message, correlation,
        parse_retry_after(answer.headers.get("Retry-After")),
    )


class RelevaClient:
    """Thread-safe client of the Releva Profile Upsert API over one pooled session.

    ``timeout`` bounds each attempt (seconds); ``max_retries`` extra attempts are made on 429,
    503 and connection failures.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        secret_key: str = "",
        batch_size: int = DEFAULT_BATCH_SIZE,
        timeout: float = 10.0,
        max_retries: int = 3,
        session: requests.Session | None = None,
        *,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not secret_key:
            raise ValueError("RelevaClient needs a secret key")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, not {batch_size!r}")
        self.url = url.rstrip("/")
        self.secret_key = secret_key
        self.batch_size = batch_size
        policy = RetryPolicy(max_retries=max_retries, backoff=backoff,
                             max_retry_wait=max_retry_wait)
        extra = {} if sleep is None else {"sleep": sleep}
        self._transport = JSONTransport(
            session, timeout=timeout, policy=policy, parse_error=parse_error, **extra
        )

    def upsert_profiles(
        self,
        profiles: Sequence[Mapping[str, Any]],
        *,
        subscribed_at_changed: bool | Sequence[bool] = False,
    ) -> RelevaUpsertResult:
        """Validate every profile, send the valid ones in batches, report by input index.

        ``subscribed_at_changed`` is one flag for all profiles or one per profile. An answer
        about a batch's content (400, 422) fails that batch only; any other error (auth, rate
        limit or outage after retries) stops sending and fails the remaining batches too.
        """
        flags = self._flags(subscribed_at_changed, len(profiles))
        rejected: list[RejectedProfile] = []
        valid: list[tuple[int, dict[str, Any]]] = []
        for index, profile in enumerate(profiles):
            try:
                prepared = prepare_profile(profile)
            except InvalidRecord as problem:
                rejected.append(RejectedProfile(index, problem.field, problem.message))
                continue
            valid.append((index, {"profile": prepared, "subscribedAtChanged": flags[index]}))

        sent: list[int] = []
        failures: list[FailedBatch] = []
        batches = [valid[i:i + self.batch_size] for i in range(0, len(valid), self.batch_size)]
        for number, batch in enumerate(batches):
            indexes = tuple(index for index, _ in batch)
            try:
                self._transport.request(
                    "POST",
                    self.url + PROFILES_PATH,
                    headers=bearer_headers(self.secret_key),
                    body={"profiles": [entry for _, entry in batch]},
                )
            except DestinationError as error:
                failures.append(FailedBatch(indexes, error))
                if isinstance(error, (RequestInvalid, SchemaMismatch)):
                    continue
                for rest in batches[number + 1:]:
                    failures.append(FailedBatch(tuple(index for index, _ in rest), error))
                break
            sent.extend(indexes)
        return RelevaUpsertResult(tuple(sent), tuple(rejected), tuple(failures))

    @staticmethod
    def _flags(flag: bool | Sequence[bool], count: int) -> list[bool]:
        if isinstance(flag, bool):
            return [flag] * count
        flags = list(flag)
        if len(flags) != count or not all(isinstance(item, bool) for item in flags):
            raise ValueError(
                f"subscribed_at_changed must be a bool or {count} bools, one per profile"
            )
        return flags


__all__ = [
    "CONSENT_VALUES",
    "DEFAULT_URL",
    "PROFILE_FIELDS",
    "FailedBatch",
    "RejectedProfile",
    "RelevaClient",
    "RelevaUpsertResult",
    "parse_error",
    "prepare_profile",
    "profile_from_traits",
]
