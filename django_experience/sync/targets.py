"""Where an import sends its rows. ``experience`` (the Experience API) is built in; other
destinations register an :class:`ImportTarget` factory under their name with
:func:`register_target`, and get the same streaming, retries, resume, errors file and summary.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, cast

from django_experience import errors_policy
from django_experience.api.batching import MAX_IDENTIFY
from django_experience.api.encoding import encode_events
from django_experience.api.errors import InvalidData, Redirected
from django_experience.mappings import PROFILE_ID_FORM, valid_profile_id
from django_experience.sync.checkpoint import secret_fingerprint
from django_experience.sync.rows import Batch, Rejected, Row, derived_profile_id

logger = logging.getLogger("django_experience.sync")

# Refusals that concern the configuration (credentials, permissions, organization and
# environment), the same for every row.
CONFIGURATION_STATUSES = (401, 403)
CONFIGURATION_CODES = ("ERR_CONFIG_NOT_FOUND",)



@dataclass
class Item:
    """A row and the payload built for it."""

    row: Row
    payload: dict[str, Any]
    # The row's person had a mapping when the batch was prepared: storing it afterwards looks
    # only those up again (a fresh import's batches need no second query).
    mapped: bool = False
    # The payload as the batch endpoint carries it, once checked (sent as it is).
    encoded: bytes | None = None


@dataclass(frozen=True)
class TargetOptions:
    """What the command line says that targets may care about."""

    asynchronous: bool = False
    timeout: float = 30.0
    locale: str | None = None


class ImportTarget:
    """One destination of an import. ``prepare``/``complete`` run in the main thread (they may
    use the database); ``send`` runs in worker threads (HTTP only) and raises on failure."""

    name = ""
    # Rows per import batch unless --batch-size says otherwise.
    batch_size = 50

    def keys(self, row: Row) -> set[str]:
        """Rows sharing a key are never in flight at the same time (one profile each)."""
        return {row.external_id}

    def item_keys(self, item: Item) -> set[str]:
        """Further keys known once a row is prepared (e.g. the value a platform matches
        profiles on, after the field mapping); waited for before the batch is sent."""
        return set()

    def fingerprint(self) -> str:
        """What decides where and how rows are sent, as a short hash (never a secret): the
        resume checkpoint skips a block only if it was completed with the same fingerprint."""
        return ""

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        raise NotImplementedError

    def send(self, items: Sequence[Item]) -> Any:
        raise NotImplementedError

    def transaction(self) -> AbstractContextManager[object] | None:
        """What :meth:`complete` writes in when what it writes must last (a database
        transaction), else ``None``. The pipeline holds one open across several batches and
        records their blocks done once it committed (``sync/commits.py``)."""
        return None

    def complete(self, items: Sequence[Item], answer: Any) -> int | None:
        """Record a successful send (e.g. profile mappings). ``answer`` is what :meth:`send`
        returned, or ``None`` for items accepted before their request failed
        (:meth:`accepted_before_failure`). Returns how many of ``items`` were delivered but
        could not be recorded (the summary's "sent but not mapped"); ``None`` for none."""
        return None

    def accepted_before_failure(self, item: Item) -> bool:
        """True when ``item`` was accepted by the destination although :meth:`send` raised
        (a destination taking one request per row, failing part-way): it counts as sent."""
        return False

    def retry_delay(self, exc: BaseException) -> float | None:
        """``None`` when ``exc`` is final, else the minimum wait before retrying."""
        return errors_policy.retry_delay(exc)

    def splittable(self, exc: BaseException) -> bool:
        """True when one bad row may have spoiled the whole batch (so bisect to find it)."""
        return errors_policy.refused_for_content(exc)

    def refused_for_content(self, exc: BaseException) -> bool:
        """True when the final error ``exc`` refuses a row for what it carries, so it would be
        refused again: the row is reported as ``refused`` and its block counts as completed.

        Any other final error (a status the destination does not document as a refusal of the
        content, an exception without a status) is no judgement on the row: the row is
        ``failed`` and its block stays open for ``--resume``.
        """
        return errors_policy.refused_for_content(exc)

    def stops_import(self, exc: BaseException, *, recovered: bool = False) -> bool:
        """True when ``exc`` refuses the import's configuration, not a row: every further
        request would meet it (bad credentials, no permission, an unknown organization or
        environment). The import stops and leaves the rest for ``--resume``. ``recovered``
        tells that ``exc`` answered a retry with a replacement from :meth:`recover`."""
        return getattr(exc, "status", None) in CONFIGURATION_STATUSES or getattr(
            exc, "code", None
        ) in CONFIGURATION_CODES

    def recover(self, item: Item, exc: BaseException) -> Item | None:
        """A replacement for a single refused item worth one more try, or None."""
        return None


class ExperienceTarget(ImportTarget):
    """Identify events to the batch endpoint: ``upsert_profiles`` (storing a ProfileMapping per
    row) or, asynchronously, ``import_events``."""

    name = "experience"
    batch_size = 50  # the API's limit of identify events per request

    def __init__(self, options: TargetOptions) -> None:
        from django.conf import settings

        from django_experience.api import ExperienceClient
        from django_experience.conf import conf

        self.options = options
        self.organization_id = conf.ORGANIZATION_ID
        self.environment = conf.ENVIRONMENT
        self._secret = str(settings.SECRET_KEY)
        self._warned_unusable = False
        # Retries are the import's (with backoff and resume); the client sends once.
        self.client = ExperienceClient(
            self.organization_id,
            environment=self.environment,
            base_url=conf.API_URL,
            timeout=options.timeout,
            max_retries=0,
        )

    def fingerprint(self) -> str:
        from django_experience.conf import conf

        # SECRET_KEY decides the profile ids of never-seen external ids.
        return secret_fingerprint(conf.API_URL, self._secret, self.options.locale)

    def _namespace(self) -> dict[str, str]:
        return {"organization_id": self.organization_id, "environment": self.environment}

    def _mapped_ids(self, rows: Sequence[Row]) -> tuple[dict[str, str], dict[Any, str]]:
        from django.db import router

        from django_experience.models import ProfileMapping
        from django_experience.sync.mapping_lookup import mapped_profile_ids

        by_external: dict[str, str] = {}
        by_user: dict[Any, str] = {}
        for external_id, user_id, profile_id in mapped_profile_ids(
            [row.external_id for row in rows],
            [row.user_pk for row in rows if row.user_pk is not None],
            namespace=self._namespace(),
            using=router.db_for_read(ProfileMapping),  # where the queryset would have read
        ):
            if external_id:
                by_external[external_id] = profile_id
            if user_id is not None:
                by_user[user_id] = profile_id
        return by_external, by_user

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        from django_experience.api.events import identify_event

        by_external, by_user = self._mapped_ids(batch.rows)
        items: list[Item] = []
        rejected: list[Rejected] = []
        for row in batch.rows:
            stored = (by_user.get(row.user_pk) if row.user_pk is not None else None) or (
                by_external.get(row.external_id)
            )
            mapped = stored is not None
            # A stored id that is not one is not sent: the derived id replaces it.
            profile_id = valid_profile_id(stored)
            if profile_id is None:
                profile_id = derived_profile_id(
                    self._secret, self.organization_id, self.environment, row.external_id
                )
            try:
                event = identify_event(
                    row.external_id,
                    row.traits,
                    message_id=row.message_id(),
                    anonymous_id=profile_id,
                )
            except ValueError as exc:
                rejected.append(Rejected(row.line, str(exc), row.canonical(), row.external_id))
                continue
            items.append(Item(row, event, mapped))
        # Found here, a row JSON cannot carry is rejected before sending, dry runs included,
        # instead of being refused by the client after bisecting its batch.
        items, unencodable = _encodable(items)
        if unencodable:
            rejected = sorted([*rejected, *unencodable], key=lambda item: item.line)
        return items, rejected

    def send(self, items: Sequence[Item]) -> Any:
        """Returns ``{sent anonymousId: profile id}`` for the rows whose profile is known."""
        from django_experience.api.errors import ExperienceAPIError

        events = [item.payload for item in items]
        parts, locale = _encoded_batch(items), self.options.locale
        if self.options.asynchronous:
            if parts is not None:
                self.client.import_encoded_events(parts, locale=locale)
            else:
                self.client.import_events(events, locale=locale)
            return None
        # Only the ids are read from the answer: parsing whole profiles cost a few percent of
        # an import's time against a fast API.
        profile_ids = (
            self.client.upsert_encoded_profile_ids(parts, locale=locale)
            if parts is not None
            else [profile.id for profile in self.client.upsert_profiles(events, locale=locale)]
        )
        matched = match_profiles([event["anonymousId"] for event in events], profile_ids)
        if len(profile_ids) > len(set(matched.values())):
            # Several rows were merged into other profiles and the answer cannot tell which
            # went where: ask again one row at a time (same message id, so nothing counts
            # twice). A failure here loses nothing: the row was delivered, only not mapped.
            for event in {event["anonymousId"]: event for event in events}.values():
                if event["anonymousId"] in matched:
                    continue
                try:
                    alone = self.client.upsert_profiles([event], locale=self.options.locale)
                except ExperienceAPIError:
                    continue
                if len(alone) == 1:
                    matched[event["anonymousId"]] = alone[0].id
        return self._keepable(matched)

    def _keepable(self, matched: dict[str, str]) -> dict[str, str]:
        """``matched`` without the profile ids no mapping (and no cookie) can keep.

        The API answers UUIDs; another answer's row is delivered, but left unmapped, as an
        ambiguous one is: the mapping's column would refuse it and fail the batch's commit.
        Logged once per import (an API answering so answers every batch so); the summary
        counts the rows.
        """
        kept = {sent: pid for sent, pid in matched.items() if valid_profile_id(pid)}
        if len(kept) < len(matched) and not self._warned_unusable:
            self._warned_unusable = True
            logger.warning(
                "Experience import: %d profile id(s) in a batch answer are not profile ids "
                "(%s); those rows were sent, not mapped. Further ones are counted in the "
                "summary, not logged",
                len(matched) - len(kept),
                PROFILE_ID_FORM,
            )
        return kept

    def splittable(self, exc: BaseException) -> bool:
        # A stale mapping (profile deleted or merged away) is found the same way as a bad row.
        # A wrong organization or environment (ERR_CONFIG_NOT_FOUND) concerns every row: no split.
        return super().splittable(exc) or errors_policy.profile_gone(exc)

    def refused_for_content(self, exc: BaseException) -> bool:
        # Documented refusals of what a row carries: 400 ERR_INVALID_DATA (and the 413/422 of
        # errors_policy), an event that is not JSON, and a profile of the row gone. Other final
        # answers (409, 404 with a code the reference does not list, ...) fail the row instead:
        # they say nothing about its content and may not recur, so --resume sends it again.
        return super().refused_for_content(exc) or errors_policy.profile_gone(exc)

    def stops_import(self, exc: BaseException, *, recovered: bool = False) -> bool:
        # A profile id made up a moment ago cannot be gone or foreign: when even that one is
        # refused, the organization or environment is what is wrong. An answer that did not
        # come from the API's routes (UNROUTED_STATUSES, a 404 without an error code) is the
        # same for every row: stop, rather than fail each row of the import in turn, and leave
        # the rest for --resume once the URL, the proxy or the deploy is sorted out.
        return (
            super().stops_import(exc, recovered=recovered)
            or (recovered and errors_policy.profile_gone(exc))
            or errors_policy.unrouted(exc)
            or isinstance(exc, Redirected)  # EXPERIENCE_API_URL points elsewhere: every row
        )

    def recover(self, item: Item, exc: BaseException) -> Item | None:
        if not errors_policy.profile_gone(exc):
            return None
        # The mapped/derived profile no longer exists: start the person a fresh profile.
        payload = {**item.payload, "anonymousId": str(uuid.uuid4())}
        return Item(item.row, payload, item.mapped)

    def transaction(self) -> AbstractContextManager[object] | None:
        if self.options.asynchronous:
            return None  # no answers, no mappings
        from django.db import router, transaction

        from django_experience.models import ProfileMapping

        return transaction.atomic(using=router.db_for_write(ProfileMapping))

    def complete(self, items: Sequence[Item], answer: Any) -> int | None:
        if self.options.asynchronous:
            return None  # no answers, no mappings: nothing was to be recorded
        by_sent: dict[str, str] = answer or {}
        matched = [
            (item.row, by_sent[item.payload["anonymousId"]], item.mapped)
            for item in items
            if item.payload["anonymousId"] in by_sent
        ]
        if matched:
            self._store(matched)
        return len(items) - len(matched)

    def _store(self, rows_sent: Sequence[tuple[Row, str, bool]]) -> None:
        """Create or update one mapping per ``(row, profile id, had a mapping)``: one insert
        for the new ones, one query more when some had a mapping, row by row on a clash."""
        from django.db import IntegrityError, router, transaction
        from django.utils import timezone

        from django_experience.models import ProfileMapping
        from django_experience.sync.new_mappings import insert_new_mappings

        namespace = self._namespace()
        wanted: dict[str, tuple[Row, str]] = {
            row.external_id: (row, pid) for row, pid, _ in rows_sent
        }
        # Only rows whose person had a mapping are looked up: a mapping made meanwhile (a
        # sign-in during the import) makes the insert clash, and is then kept as it is.
        mapped = [row for row, _, had_mapping in rows_sent if had_mapping]
        user_pks = [row.user_pk for row in mapped if row.user_pk is not None]
        # One query per owner column (see mapping_lookup: OR made SQLite search the namespace).
        here = ProfileMapping.objects.filter(**namespace)
        owners = []
        if mapped:
            owners.append(here.filter(external_id__in=[row.external_id for row in mapped]))
        if user_pks:
            owners.append(here.filter(user_id__in=user_pks))
        existing: dict[str, ProfileMapping] = {}
        by_user: dict[Any, ProfileMapping] = {}
        seen: set[Any] = set()
        for found in itertools.chain.from_iterable(owners):
            if found.pk in seen:
                continue  # found by both columns: one object per row, as with one query
            seen.add(found.pk)
            if found.external_id:
                existing[found.external_id] = found
            if found.user_id is not None:
                by_user[found.user_id] = found
        now = timezone.now()
        new: list[tuple[str, str, Any]] = []  # (profile id, external id, user pk)
        changed: list[ProfileMapping] = []
        for external_id, (row, profile_id) in wanted.items():
            mapping = by_user.get(row.user_pk) if row.user_pk is not None else None
            mapping = mapping or existing.get(external_id)
            if mapping is None:
                new.append((profile_id, external_id, row.user_pk))
            elif mapping.profile_id != profile_id or mapping.external_id != external_id:
                mapping.profile_id, mapping.external_id = profile_id, external_id
                changed.append(mapping)
        using = router.db_for_write(ProfileMapping)  # where bulk_create would have written
        try:
            with transaction.atomic(using=using):
                insert_new_mappings(new, namespace=namespace, now=now, using=using)
        except IntegrityError:
            # A clash (a concurrent sign-in?): nothing was inserted; sort it out row by row.
            changed.extend(
                ProfileMapping(
                    profile_id=profile_id,
                    external_id=external_id,
                    user_id=user_pk,
                    last_seen_at=now,
                    **namespace,
                )
                for profile_id, external_id, user_pk in new
            )
        for mapping in changed:
            try:
                with transaction.atomic(using=using):
                    if mapping.pk is None:
                        mapping.save()
                    else:
                        mapping.save(update_fields=["profile_id", "external_id", "updated_at"])
            except IntegrityError:
                # The profile is mapped to somebody else already: leave that mapping alone.
                continue


def _encodable(items: list[Item]) -> tuple[list[Item], list[Rejected]]:
    """The items whose event the client can send, and the others rejected with the reason.

    The client refuses an event JSON cannot carry: NaN or Infinity read from a file, a Decimal
    or another object among a user's traits, a lone surrogate. One encoding of the whole batch,
    then one per row only when that fails. Each item keeps its encoding: sending does not
    encode it again.
    """
    try:
        parts = encode_events([item.payload for item in items])
    except InvalidData:
        pass
    else:
        for item, part in zip(items, parts, strict=True):
            item.encoded = part
        return items, []
    encodable: list[Item] = []
    rejected: list[Rejected] = []
    for item in items:
        try:
            (item.encoded,) = encode_events([item.payload])
        except InvalidData as exc:
            row = item.row
            reason = f"cannot be sent as JSON: {exc.__cause__ or exc}"
            rejected.append(Rejected(row.line, reason, row.canonical(), row.external_id))
        else:
            encodable.append(item)
    return encodable, rejected


def _encoded_batch(items: Sequence[Item]) -> list[bytes] | None:
    """The items' encoded events when they make one request as they are (every item checked,
    no more identify events than one request takes), else ``None``."""
    if len(items) > MAX_IDENTIFY:
        return None
    parts = [item.encoded for item in items]
    return None if any(part is None for part in parts) else cast("list[bytes]", parts)


def match_profiles(sent: Sequence[str], returned: Sequence[str]) -> dict[str, str]:
    """Which returned profile each sent ``anonymousId`` ended up in.

    The batch endpoint answers one profile per unique anonymousId, in no promised order, and a
    profile may come back under another id (an identify merged it into the profile already
    holding that user id). Returned ids equal to a sent one are matched to it; of the rest, a
    single sent id left over is paired with a single returned id left over. Anything else is
    ambiguous and left unmatched: no mapping is better than one to somebody else's profile.
    """
    sent_ids = list(dict.fromkeys(sent))
    returned_ids = list(dict.fromkeys(returned))
    sent_set, returned_set = set(sent_ids), set(returned_ids)
    matched = {pid: pid for pid in sent_ids if pid in returned_set}
    left_sent = [pid for pid in sent_ids if pid not in returned_set]
    left_returned = [pid for pid in returned_ids if pid not in sent_set]
    if len(left_sent) == 1 and len(left_returned) == 1:
        matched[left_sent[0]] = left_returned[0]
    return matched


TargetFactory = Callable[[TargetOptions], ImportTarget]
_targets: dict[str, TargetFactory] = {"experience": ExperienceTarget}


def register_target(name: str, factory: TargetFactory) -> None:
    """Make ``--destination name`` available."""
    _targets[name] = factory


def target_names() -> list[str]:
    return sorted(_targets)


def build_target(name: str, options: TargetOptions) -> ImportTarget:
    try:
        factory = _targets[name]
    except KeyError:
        raise LookupError(
            f"unknown destination {name!r}: choose from {', '.join(target_names())}"
        ) from None
    return factory(options)
