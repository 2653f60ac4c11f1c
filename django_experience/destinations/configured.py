"""Destinations built from the ``EXPERIENCE_DESTINATIONS`` setting, behind one interface.

``build_destinations(config)`` turns the setting's dict into ``{name: Destination}``; each
``Destination.send(traits_list)`` maps our traits to the platform's record (with the configured
``fields``), sends them, and reports by input index what was sent, rejected before sending, and
failed. Django-free: the caller reads the setting and passes the dict in.

Shape::

    {"experiture": {"url": ..., "token": ..., "match_key": "email", "fields": {...},
                    "check_schema": False, "timeout": 10.0, "max_retries": 3},
     "releva": {"url": ..., "secret_key": ..., "fields": {...}, "batch_size": 100,
                "subscribed_at_changed": False, "timeout": 10.0, "max_retries": 3}}
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from django_experience.destinations.errors import (
    DestinationError,
    InvalidRecord,
    RequestInvalid,
    SchemaMismatch,
)
from django_experience.destinations.experiture import ExperitureClient, record_from_traits
from django_experience.destinations.releva import RelevaClient, profile_from_traits

EXPERITURE_OPTIONS = frozenset(
    {"url", "token", "match_key", "fields", "check_schema", "timeout", "max_retries"}
)
RELEVA_OPTIONS = frozenset(
    {"url", "secret_key", "fields", "batch_size", "subscribed_at_changed", "timeout", "max_retries"}
)


@dataclass(frozen=True)
class Rejected:
    index: int
    reason: str
    field: str | None = None  # the offending field, when one is to blame


@dataclass(frozen=True)
class Failed:
    index: int
    error: DestinationError


@dataclass(frozen=True)
class SendReport:
    """What became of each input (by index) at one destination."""

    destination: str
    sent: tuple[int, ...] = ()
    rejected: tuple[Rejected, ...] = ()
    failed: tuple[Failed, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.rejected and not self.failed


class Destination(Protocol):
    name: str
    # True when one request carries several records: a refusal of its content (400, 422) may
    # be about any one of them, so the caller splits them to find it.
    batched: bool

    def send(self, traits: Sequence[Mapping[str, Any]]) -> SendReport: ...


def _stops_everything(error: DestinationError) -> bool:
    """True for errors that later requests would meet too (auth, rate limit, outage)."""
    return not isinstance(error, (RequestInvalid, SchemaMismatch))


class ExperitureDestination:
    """One upsert per profile, matched on ``match_key``."""

    name = "experiture"
    batched = False  # a refusal is about the one record of its request

    def __init__(
        self,
        client: ExperitureClient,
        *,
        match_key: str | None = None,
        fields: Mapping[str, str] | None = None,
        check_schema: bool = False,
    ) -> None:
        record_from_traits({}, fields)  # a wrong mapping is a configuration error: raise now
        self.client = client
        self.match_key = match_key
        self.fields = dict(fields) if fields is not None else None
        self.check_schema = check_schema
        self._schema_lock = threading.Lock()

    def send(self, traits: Sequence[Mapping[str, Any]]) -> SendReport:
        sent: list[int] = []
        rejected: list[Rejected] = []
        failed: list[Failed] = []
        try:
            self._load_schema()
        except DestinationError as error:
            return SendReport(self.name, failed=tuple(Failed(i, error) for i in range(len(traits))))
        for index, item in enumerate(traits):
            try:
                record = record_from_traits(item, self.fields)
                self.client.upsert_profile(record, self.match_key)
            except InvalidRecord as problem:
                rejected.append(Rejected(index, problem.message, problem.field))
            except DestinationError as error:
                failed.append(Failed(index, error))
                if _stops_everything(error):
                    failed.extend(Failed(rest, error) for rest in range(index + 1, len(traits)))
                    break
            else:
                sent.append(index)
        return SendReport(self.name, tuple(sent), tuple(rejected), tuple(failed))

    def _load_schema(self) -> None:
        if not self.check_schema or self.client.schema is not None:
            return
        with self._schema_lock:
            if self.client.schema is None:
                self.client.get_schema()


class RelevaDestination:
    """Profiles in batches of the client's ``batch_size``."""

    name = "releva"
    batched = True  # one request refused for its content fails all of its profiles

    def __init__(
        self,
        client: RelevaClient,
        *,
        fields: Mapping[str, str] | None = None,
        subscribed_at_changed: bool = False,
    ) -> None:
        profile_from_traits({}, fields)  # a wrong mapping is a configuration error: raise now
        self.client = client
        self.fields = dict(fields) if fields is not None else None
        self.subscribed_at_changed = subscribed_at_changed

    def send(self, traits: Sequence[Mapping[str, Any]]) -> SendReport:
        rejected: list[Rejected] = []
        profiles: list[dict[str, Any]] = []
        positions: list[int] = []  # input index of each mapped profile
        for index, item in enumerate(traits):
            try:
                profiles.append(profile_from_traits(item, self.fields))
            except ValueError as problem:
                rejected.append(Rejected(index, str(problem)))
                continue
            positions.append(index)
        result = self.client.upsert_profiles(
            profiles, subscribed_at_changed=self.subscribed_at_changed
        )
        rejected += [
            Rejected(positions[item.index], item.reason, item.field) for item in result.rejected
        ]
        failed = [
            Failed(positions[index], batch.error)
            for batch in result.failures
            for index in batch.indexes
        ]
        return SendReport(
            self.name,
            tuple(positions[index] for index in result.sent),
            tuple(sorted(rejected, key=lambda item: item.index)),
            tuple(failed),
        )


def _options(name: str, options: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise ValueError(f"EXPERIENCE_DESTINATIONS[{name!r}] must be a dict")
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(
            f"EXPERIENCE_DESTINATIONS[{name!r}] has unknown option(s) {', '.join(unknown)} "
            f"(known: {', '.join(sorted(allowed))})"
        )
    fields = options.get("fields")
    if fields is not None and not (
        isinstance(fields, Mapping)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in fields.items())
    ):
        raise ValueError(f"EXPERIENCE_DESTINATIONS[{name!r}]['fields'] must map str to str")
    return dict(options)


def _client_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The options the platform's client takes, checked here: a wrong type would only fail
    when the first profile is sent (and every one after it)."""
    where = f"EXPERIENCE_DESTINATIONS[{name!r}]"
    if not isinstance(options.get("url", ""), str):
        raise ValueError(f"{where}['url'] must be a string, not {options['url']!r}")
    timeout = options.get("timeout", 10.0)
    if (
        isinstance(timeout, bool)
        or not isinstance(timeout, int | float)
        or not (0 < timeout < math.inf)
    ):
        raise ValueError(
            f"{where}['timeout'] must be a positive number of seconds, not {timeout!r}"
        )
    retries = options.get("max_retries", 3)
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(
            f"{where}['max_retries'] must be a whole number, 0 or more, not {retries!r}"
        )
    return {key: options[key] for key in ("url", "timeout", "max_retries") if key in options}


def build_destinations(
    config: Mapping[str, Any] | None, *, session: requests.Session | None = None
) -> dict[str, Destination]:
    """``{name: Destination}`` for the ``EXPERIENCE_DESTINATIONS`` dict; raises ``ValueError``
    naming the destination and option that is wrong."""
    if config is not None and not isinstance(config, Mapping):
        raise ValueError("EXPERIENCE_DESTINATIONS must be a dict of destination name to options")
    destinations: dict[str, Destination] = {}
    for name, raw in (config or {}).items():
        if name == "experiture":
            options = _options(name, raw, EXPERITURE_OPTIONS)
            if not options.get("token"):
                raise ValueError("EXPERIENCE_DESTINATIONS['experiture'] needs a 'token'")
            client = ExperitureClient(
                token=options["token"], session=session, **_client_options(name, options)
            )
            destinations[name] = ExperitureDestination(
                client,
                match_key=options.get("match_key"),
                fields=options.get("fields"),
                check_schema=bool(options.get("check_schema", False)),
            )
        elif name == "releva":
            options = _options(name, raw, RELEVA_OPTIONS)
            if not options.get("secret_key"):
                raise ValueError("EXPERIENCE_DESTINATIONS['releva'] needs a 'secret_key'")
            releva = RelevaClient(
                secret_key=options["secret_key"],
                batch_size=options.get("batch_size", 100),
                session=session,
                **_client_options(name, options),
            )
            destinations[name] = RelevaDestination(
                releva,
                fields=options.get("fields"),
                subscribed_at_changed=bool(options.get("subscribed_at_changed", False)),
            )
        else:
            raise ValueError(
                f"EXPERIENCE_DESTINATIONS has unknown destination {name!r} "
                "(known: experiture, releva)"
            )
    return destinations


__all__ = [
    "Destination",
    "ExperitureDestination",
    "Failed",
    "Rejected",
    "RelevaDestination",
    "SendReport",
    "build_destinations",
]
