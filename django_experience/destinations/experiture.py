"""Client of the Experiture CDP Profiles API: upsert one profile, read the profiles schema.

``POST {url}/profiles/upsert`` with ``{"record": ..., "matchKey": ...}`` and a bearer token.
Field semantics follow the API: a key left out of ``record`` is unchanged, ``None`` is sent as
``null`` and clears the field. Records that the API would refuse are refused before sending:
an empty record, a naive date-time (object or string), and, once a schema is loaded, fields the
``profiles`` object does not have.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from django_experience.destinations.errors import (
    DestinationError,
    InvalidRecord,
    NotAccepted,
    TransportError,
    UnknownField,
    error_for,
)
from django_experience.destinations.http import (
    Answer,
    JSONTransport,
    RetryPolicy,
    bearer_headers,
    parse_retry_after,
)
from django_experience.destinations.values import ValueProblem, to_json

DEFAULT_URL = "https://api.experiture.ai/public/v1"
UPSERT_PATH = "/profiles/upsert"
SCHEMA_PATH = "/metadata/objects/profiles"


@dataclass(frozen=True)
class UpsertReceipt:
    """The API's acknowledgement of one upsert (the ``data`` of its 200 answer).

    ``accepted`` is always true: an answer saying ``"accepted": false`` raises
    :class:`~django_experience.destinations.errors.NotAccepted` instead."""

    accepted: bool
    accepted_records: int
    match_key: str | None
    accepted_at: str | None
    correlation_id: str | None
    raw: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ProfileSchema:
    """The field names of the workspace's ``profiles`` object."""

    fields: frozenset[str]
    primary_key: str | None = None
    raw: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def from_json(cls, body: Any) -> ProfileSchema:
        """Read the metadata answer, tolerating the usual shapes of a field list.

        ``fields`` (or ``properties``/``columns``/``attributes``) may be a list of names, a
        list of objects with ``name`` (or ``key``/``apiName``/``fieldName``), or an object
        keyed by field name; it may sit in ``data`` or at the top level.
        """
        data = body.get("data", body) if isinstance(body, dict) else None
        if isinstance(data, dict) and isinstance(data.get("object"), dict):
            data = data["object"]
        if not isinstance(data, dict):
            raise ValueError("schema answer is not a JSON object")
        for key in ("fields", "properties", "columns", "attributes"):
            if key in data:
                names = _field_names(data[key])
                break
        else:
            raise ValueError("schema answer lists no fields")
        primary = data.get("primaryKey") or data.get("primary_key")
        return cls(frozenset(names), primary if isinstance(primary, str) else None, body)


def _field_names(spec: Any) -> list[str]:
    if isinstance(spec, dict):
        return [str(name) for name in spec]
    if not isinstance(spec, list):
        raise ValueError("schema fields are neither a list nor an object")
    names: list[str] = []
    for item in spec:
        if isinstance(item, str):
            names.append(item)
            continue
        if isinstance(item, dict):
            for key in ("name", "key", "apiName", "fieldName"):
                if isinstance(item.get(key), str):
                    names.append(item[key])
                    break
            else:
                raise ValueError(f"schema field {item!r} has no name")
            continue
        raise ValueError(f"schema field {item!r} has no name")
    return names


def record_from_traits(
    traits: Mapping[str, Any], fields: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Experiture record for a profile's traits.

    Without ``fields`` the traits are taken as they are. With ``fields`` (our trait name ->
    Experiture field name) only the named traits are taken, renamed. A trait that is absent
    stays absent (the field is left unchanged); a trait that is ``None`` clears the field.
    """
    if fields is None:
        return dict(traits)
    _check_mapping(fields)
    return {target: traits[source] for source, target in fields.items() if source in traits}


def _check_mapping(fields: Mapping[str, str]) -> None:
    seen: dict[str, str] = {}
    for source, target in fields.items():
        if not isinstance(target, str) or not target:
            raise ValueError(f"fields[{source!r}] must be a non-empty field name, not {target!r}")
        if target in seen:
            raise ValueError(
                f"fields map both {seen[target]!r} and {source!r} to the same field {target!r}"
            )
        seen[target] = source


def build_upsert_body(
    record: Mapping[str, Any],
    match_key: str | None = None,
    schema: ProfileSchema | None = None,
) -> dict[str, Any]:
    """The JSON body for ``POST /profiles/upsert``; raises :class:`InvalidRecord` (naming the
    field) for anything the API documents as refused."""
    if not isinstance(record, Mapping):
        raise InvalidRecord(f"record must be a mapping, not {type(record).__name__}")
    if not record:
        raise InvalidRecord("record must contain at least one field")
    prepared: dict[str, Any] = {}
    for name, value in record.items():
        if not isinstance(name, str) or not name:
            raise InvalidRecord(f"field name {name!r} must be a non-empty string", field=str(name))
        try:
            prepared[name] = to_json(value, name, require_zone=True)
        except ValueProblem as problem:
            raise InvalidRecord(str(problem), field=problem.field) from None
    if schema is not None:
        unknown = sorted(set(prepared) - schema.fields)
        if unknown:
            raise UnknownField(
                "field(s) not on the profiles object: " + ", ".join(unknown), field=unknown[0]
            )
    body: dict[str, Any] = {"record": prepared}
    if match_key is not None:
        if not isinstance(match_key, str) or not match_key:
            raise InvalidRecord(f"match_key must be a non-empty string, not {match_key!r}")
        if schema is not None and match_key not in schema.fields:
            raise UnknownField(f"match key {match_key!r} is not on the profiles object",
                               field=match_key)
        if prepared.get(match_key) is None:
            raise InvalidRecord(
                f"record has no value for its match key {match_key!r}", field=match_key
            )
        body["matchKey"] = match_key
    return body


def parse_error(answer: Answer) -> DestinationError:
    """The error for an Experiture error answer: code, message and correlationId from the body
    (``{"error": {"code", "message"}, "correlationId"}`` or flat), falling back to the status."""
    body = answer.body if isinstance(answer.body, dict) else {}
    detail = body.get("error")
    code = message = correlation = None
    if isinstance(detail, dict):
        code = detail.get("code")
        message = detail.get("message")
        correlation = detail.get("correlationId")
    elif isinstance(detail, str):
        message = detail
    code = code or body.get("code")
    message = message or body.get("message")
    correlation = (
        body.get("correlationId")
        or correlation
        or answer.headers.get("X-Correlation-Id")
        or answer.headers.get("X-Request-Id")
    )
    if not isinstance(message, str) or not message:
        message = answer.text.strip()[:200] or f"Experiture answered {answer.status}"
    return error_for(
        answer.status,
        code if isinstance(code, str) else None,
        message,
        correlation if isinstance(correlation, str) else None,
        parse_retry_after(answer.headers.get("Retry-After")),
    )


def _string(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _count(value: object) -> int:
    """``acceptedRecords`` as a number; anything else (absent, text) as 0, not a crash."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


class ExperitureClient:
    """Thread-safe client of the Experiture Profiles API over one pooled session.

    ``timeout`` bounds each attempt (seconds); ``max_retries`` extra attempts are made on 429,
    503 and connection failures. ``schema`` (a :class:`ProfileSchema` or field names) turns on
    the unknown-field check without a request; :meth:`get_schema` loads it from the API.
    """

    def __init__(
        self,
        url: str = DEFAULT_URL,
        token: str = "",
        timeout: float = 10.0,
        max_retries: int = 3,
        session: requests.Session | None = None,
        *,
        schema: ProfileSchema | Iterable[str] | None = None,
        backoff: float = 0.5,
        max_retry_wait: float = 60.0,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        if not token:
            raise ValueError("ExperitureClient needs a bearer token")
        self.url = url.rstrip("/")
        self.token = token
        self.schema: ProfileSchema | None = (
            None if schema is None
            else schema if isinstance(schema, ProfileSchema)
            else ProfileSchema(frozenset(schema))
        )
        policy = RetryPolicy(max_retries=max_retries, backoff=backoff,
                             max_retry_wait=max_retry_wait)
        extra = {} if sleep is None else {"sleep": sleep}
        self._transport = JSONTransport(
            session, timeout=timeout, policy=policy, parse_error=parse_error, **extra
        )

    def upsert_profile(
        self, record: Mapping[str, Any], match_key: str | None = None
    ) -> UpsertReceipt:
        """Insert or update one profile. Raises :class:`InvalidRecord` before sending, or the
        :class:`DestinationError` matching the API's answer."""
        body = build_upsert_body(record, match_key, self.schema)
        answer = self._transport.request(
            "POST", self.url + UPSERT_PATH, headers=bearer_headers(self.token), body=body
        )
        payload = answer.body
        if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
            raise TransportError(
                f"Experiture answered {answer.status} without the documented JSON body",
                status=answer.status,
            )
        if payload.get("success") is False:
            raise parse_error(answer)
        data = payload["data"]
        if data.get("accepted") is False:  # a 200 that took nothing: the row is not sent
            raise NotAccepted(
                f"Experiture answered {answer.status} but did not accept the record"
                " (accepted: false)",
                status=answer.status,
                correlation_id=_string(payload.get("correlationId")),
            )
        return UpsertReceipt(
            accepted=True,
            accepted_records=_count(data.get("acceptedRecords")),
            match_key=_string(data.get("matchKey")),
            accepted_at=_string(data.get("acceptedAt")),
            correlation_id=_string(payload.get("correlationId")),
            raw=payload,
        )

    def get_schema(self) -> ProfileSchema:
        """Fetch the ``profiles`` schema and keep it: later upserts refuse unknown fields."""
        answer = self._transport.request(
            "GET", self.url + SCHEMA_PATH, headers=bearer_headers(self.token)
        )
        try:
            schema = ProfileSchema.from_json(answer.body)
        except ValueError as exc:
            raise TransportError(
                f"Experiture schema answer is not understood: {exc}", status=answer.status
            ) from None
        self.schema = schema
        return schema


__all__ = [
    "DEFAULT_URL",
    "ExperitureClient",
    "ProfileSchema",
    "UpsertReceipt",
    "build_upsert_body",
    "parse_error",
    "record_from_traits",
]
