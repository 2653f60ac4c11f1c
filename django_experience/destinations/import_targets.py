"""``experience_import --destination experiture | releva``: import rows into the destinations.

Each row's traits are mapped with the destination's ``fields`` and checked against the
platform's documented validation before anything is sent: a row that would be refused is
reported with its line number and reason (and written to the errors file), the others are sent.
Experiture takes one upsert per row; Releva takes the rows of an import batch in requests of its
configured ``batch_size``. The import's progress, retries, resume and exit status apply as for
the Experience API; the clients themselves do not retry.

Progress inside a batch survives the import's retries: a row the platform accepted is marked in
its payload and not sent again when the batch is retried after a rate limit or an outage.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django_experience.destinations.configured import (
    ExperitureDestination,
    RelevaDestination,
    build_destinations,
)
from django_experience.destinations.errors import DestinationError, InvalidRecord
from django_experience.destinations.experiture import build_upsert_body, record_from_traits
from django_experience.destinations.releva import prepare_profile, profile_from_traits
from django_experience.destinations.sinks import DESTINATION_NAMES, configured_options
from django_experience.sync.checkpoint import secret_fingerprint
from django_experience.sync.rows import Batch, Rejected, Row
from django_experience.sync.targets import ImportTarget, Item, TargetOptions

SENT = "sent"  # payload key: the platform accepted this row during the current batch
REFUSED = "refused"  # payload key: the final error the platform answered this row with


def _destination(name: str, options: TargetOptions) -> Any:
    config = configured_options(name)
    if config is None:
        raise LookupError(f"--destination {name} needs EXPERIENCE_DESTINATIONS[{name!r}]")
    # One attempt per request: the import retries, with its own backoff, bound and resume.
    config.update(timeout=options.timeout, max_retries=0)
    try:
        return build_destinations({name: config})[name]
    except ValueError as exc:
        raise LookupError(str(exc)) from None


def _rejected(row: Row, reason: str) -> Rejected:
    return Rejected(row.line, reason, row.canonical(), row.external_id)


def _with_user_emails(batch: Batch) -> list[tuple[Row, dict[str, Any]]]:
    """Each row with its traits; with ``--users``, the user's email is added when the traits
    have none, as the identify fan-out does (both platforms find profiles by email)."""
    wanting = [row.user_pk for row in batch.rows
               if row.user_pk is not None and not row.traits.get("email")]
    emails: dict[Any, str] = {}
    if wanting:
        from django.contrib.auth import get_user_model

        model = get_user_model()
        field = model.get_email_field_name()
        emails = {
            pk: email
            for pk, email in model._default_manager.filter(pk__in=wanting).values_list("pk", field)
            if isinstance(email, str) and email
        }
    return [
        (row, {**row.traits, "email": emails[row.user_pk]} if row.user_pk in emails
         else row.traits)
        for row in batch.rows
    ]


def _match_keys(payload: Any, fields: Sequence[str]) -> set[str]:
    """Concurrency keys for the values a platform finds a profile by (case-insensitive, to be
    on the safe side: a key shared by mistake only costs concurrency)."""
    keys: set[str] = set()
    if isinstance(payload, dict):
        for field in fields:
            value = payload.get(field)
            if value is not None and value != "":
                keys.add(f"{field}:{str(value).strip().lower()}")
    return keys


class DestinationTarget(ImportTarget):
    name = ""

    def fingerprint(self) -> str:
        # The platform's URL and credentials (hashed) and what shapes the payloads; not the
        # timeouts and request sizes.
        options = configured_options(self.name) or {}
        decisive = {
            key: value for key, value in options.items()
            if key not in ("timeout", "max_retries", "batch_size", "check_schema")
        }
        return secret_fingerprint(self.name, decisive)

    def accepted_before_failure(self, item: Item) -> bool:
        return bool(item.payload.get(SENT))

    def retry_delay(self, exc: BaseException) -> float | None:
        if getattr(exc, "local", False):
            return None  # refused before sending: it would be refused again
        return super().retry_delay(exc)


class ExperitureTarget(DestinationTarget):
    """One ``POST /profiles/upsert`` per row, matched on the configured ``match_key``."""

    name = "experiture"

    def __init__(self, options: TargetOptions) -> None:
        destination = _destination(self.name, options)
        assert isinstance(destination, ExperitureDestination)
        self.destination = destination
        if destination.check_schema:
            try:
                destination.client.get_schema()  # unknown fields become rejected rows
            except DestinationError as exc:
                raise LookupError(f"Experiture profiles schema not loaded: {exc}") from None

    def item_keys(self, item: Item) -> set[str]:
        # The platform finds the profile by the match key: two rows with the same value (two
        # ids, one email) would race, and either could win. Without a match key the object's
        # primary key decides, "typically email or customer_id".
        match_key = self.destination.match_key
        return _match_keys(
            item.payload["record"], (match_key,) if match_key else ("email", "customer_id")
        )

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        client, match_key = self.destination.client, self.destination.match_key
        items: list[Item] = []
        rejected: list[Rejected] = []
        for row, traits in _with_user_emails(batch):
            try:
                record = record_from_traits(traits, self.destination.fields)
                build_upsert_body(record, match_key, client.schema)
            except InvalidRecord as problem:
                rejected.append(_rejected(row, problem.message))
                continue
            items.append(Item(row, {"record": record}))
        return items, rejected

    def splittable(self, exc: BaseException) -> bool:
        # One request per row: a final error is the answer to the row that met it, whatever
        # its status (a 409, a 200 saying "accepted": false). Splitting sends the rows after it
        # still; those answered before are not sent again (SENT, REFUSED).
        return True

    def send(self, items: Sequence[Item]) -> Any:
        client, match_key = self.destination.client, self.destination.match_key
        for item in items:
            if item.payload.get(SENT):
                continue
            refusal = item.payload.get(REFUSED)
            if refusal is not None:
                raise refusal  # its final answer, met again while the batch is split
            try:
                client.upsert_profile(item.payload["record"], match_key)
            except DestinationError as exc:
                if self.retry_delay(exc) is None:
                    item.payload[REFUSED] = exc
                raise
            item.payload[SENT] = True
        return None


class RelevaTarget(DestinationTarget):
    """``POST /profiles`` with the batch's rows, in requests of the configured ``batch_size``."""

    name = "releva"

    def __init__(self, options: TargetOptions) -> None:
        destination = _destination(self.name, options)
        assert isinstance(destination, RelevaDestination)
        self.destination = destination
        # Its configured batch_size (default 100) is also the import's unless --batch-size
        # is given; a larger --batch-size is sent in requests of batch_size.
        self.batch_size = destination.client.batch_size

    def item_keys(self, item: Item) -> set[str]:
        # Releva finds profiles by email or phone: rows naming one never race each other. Taken
        # from the profile as sent, so mapped fields and aliases (phone, ...) count too.
        return _match_keys(item.payload["profile"], ("email", "phoneNumber"))

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        items: list[Item] = []
        rejected: list[Rejected] = []
        for row, traits in _with_user_emails(batch):
            try:
                profile = profile_from_traits(traits, self.destination.fields)
                prepare_profile(profile)
            except ValueError as problem:  # InvalidRecord is a ValueError too
                reason = problem.message if isinstance(problem, InvalidRecord) else str(problem)
                rejected.append(_rejected(row, reason))
                continue
            items.append(Item(row, {"profile": profile}))
        return items, rejected

    def send(self, items: Sequence[Item]) -> Any:
        pending = [item for item in items if not item.payload.get(SENT)]
        if not pending:
            return None
        result = self.destination.client.upsert_profiles(
            [item.payload["profile"] for item in pending],
            subscribed_at_changed=self.destination.subscribed_at_changed,
        )
        for index in result.sent:
            pending[index].payload[SENT] = True
        if result.rejected:
            raise InvalidRecord(result.rejected[0].reason, field=result.rejected[0].field)
        if result.failures:
            raise result.failures[0].error
        return None


TARGETS: dict[str, type[ImportTarget]] = {"experiture": ExperitureTarget, "releva": RelevaTarget}
assert set(TARGETS) == set(DESTINATION_NAMES)

__all__ = ["TARGETS", "ExperitureTarget", "RelevaTarget"]
