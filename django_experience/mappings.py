"""ProfileMapping bookkeeping: which profile a user (or external id) is served from."""

from __future__ import annotations

import contextlib
import logging
import random
import re
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django_experience.conf import conf

if TYPE_CHECKING:
    from django_experience.models import ProfileMapping

logger = logging.getLogger("django_experience")

PROFILE_ID_PATTERN = r"[A-Za-z0-9_-]{1,64}"
_PROFILE_ID = re.compile(PROFILE_ID_PATTERN)
PROFILE_ID_FORM = "1-64 characters of A-Z, a-z, 0-9, '_' and '-'"

EXTERNAL_ID_MAX_LENGTH = 255
"""The longest external id a mapping keeps (the ``ProfileMapping.external_id`` column)."""


def unkeepable_external_id(external_id: str) -> str | None:
    """Why a mapping cannot keep ``external_id`` (``"is longer than 255 characters"``), or
    ``None`` when it can. SQLite would store either; PostgreSQL refuses both (its text cannot
    hold a NUL character), so they are refused on every database alike."""
    if len(external_id) > EXTERNAL_ID_MAX_LENGTH:
        return f"is longer than {EXTERNAL_ID_MAX_LENGTH} characters"
    if "\x00" in external_id:
        return "holds a NUL character"
    return None


def valid_profile_id(value: object) -> str | None:
    """``value`` when it is a profile id this app can keep: charset ``[A-Za-z0-9_-]``, 1-64
    characters, so that it fits the cookie unquoted and the mapping's column."""
    if isinstance(value, str) and _PROFILE_ID.fullmatch(value):
        return value
    return None


def answered_profile_id(profile_id: str) -> str:
    """The profile id of an API answer, when this app can keep it; else ``MalformedResponse``.

    The API answers UUIDs. Anything else (a proxy's or a faulty deploy's answer) would go into
    the cookie quoted and be refused when it came back, a new profile made on every request;
    or be refused by the mapping's column.
    """
    if valid_profile_id(profile_id) is None:
        from django_experience.api.errors import MalformedResponse

        raise MalformedResponse(
            f"the answer's profile.id {profile_id[:80]!r} is not a profile id ({PROFILE_ID_FORM})"
        )
    return profile_id


def mapping_database() -> str:
    """The alias of the database the project's routers write ``ProfileMapping`` rows to.

    A transaction, a lock or a savepoint for the mappings must be taken there: the default
    database's would leave the mapping queries outside of it when a router puts them
    elsewhere (and ``SELECT ... FOR UPDATE`` outside a transaction is an error).
    """
    from django.db import router

    from django_experience.models import ProfileMapping

    return router.db_for_write(ProfileMapping)


def mapping_read_database() -> str:
    """The alias of the database the project's routers read ``ProfileMapping`` rows from."""
    from django.db import router

    from django_experience.models import ProfileMapping

    return router.db_for_read(ProfileMapping)


@contextlib.contextmanager
def kept_usable(using: str) -> Iterator[None]:
    """A savepoint around a request's mapping query, when the request is in a transaction on
    ``using`` (``ATOMIC_REQUESTS``, ``transaction.atomic``).

    A query that fails there (the table not migrated yet, a statement timeout) leaves a
    PostgreSQL transaction aborted: every later query of the view would fail with it, and the
    page would be an error page because of personalization. Rolled back to the savepoint, the
    view's transaction goes on. Outside a transaction nothing is added (autocommit).
    """
    from django.db import connections, transaction

    if connections[using].in_atomic_block:
        with transaction.atomic(using=using):
            yield
    else:
        yield


def namespace() -> dict[str, str]:
    """The filter of the configured organization and environment."""
    return {"organization_id": conf.ORGANIZATION_ID, "environment": conf.ENVIRONMENT}


LAST_SEEN_RESOLUTION = timedelta(hours=1)
"""``ProfileMapping.last_seen_at`` is refreshed at most this often (one write per hour)."""


def mapped_profile_id(user: Any) -> str | None:
    """The profile id mapped to a signed-in user, or ``None``; notes when they were last seen."""
    if user is None or not getattr(user, "is_authenticated", False) or user.pk is None:
        return None  # before the imports: every anonymous request asks
    from django.db import DatabaseError, transaction
    from django.utils import timezone

    from django_experience.models import ProfileMapping

    reading = mapping_read_database()
    with kept_usable(reading):
        row = (
            ProfileMapping.objects.using(reading)
            .filter(user=user, **namespace())
            .values_list("pk", "profile_id", "last_seen_at")
            .first()
        )
    if row is None:
        return None
    pk, profile_id, last_seen_at = row
    now = timezone.now()
    if last_seen_at is None or now - last_seen_at > LAST_SEEN_RESOLUTION:
        # A busy database: the next request notes it instead (the savepoint keeps a
        # surrounding transaction usable).
        using = mapping_database()
        with contextlib.suppress(DatabaseError), transaction.atomic(using=using):
            ProfileMapping.objects.using(using).filter(pk=pk).update(last_seen_at=now)
    usable = valid_profile_id(profile_id)
    if usable is None:
        # Stored before ids were checked, or written past the model's validation: served, it
        # would go into the cookie quoted and be refused when it came back. Unmapped, the user
        # is identified anew and the row takes the answered id.
        logger.warning(
            "Experience profile mapping %s holds a profile id that is not one (%s); "
            "identifying the user anew",
            pk,
            PROFILE_ID_FORM,
        )
    return usable


def owned_mapping(
    user: Any, external_id: str | None, *, for_update: bool = False, using: str | None = None
) -> ProfileMapping | None:
    """The ``ProfileMapping`` of ``user``, else the one of ``external_id``, in the configured
    namespace, or ``None``; locked with ``SELECT ... FOR UPDATE`` when ``for_update``, read
    from the database ``using`` when given (the routers' choice otherwise).

    One indexed query per owner, the user's first: a single query with ``user = %s OR
    external_id = %s`` made SQLite search the namespace's whole index, so that every sign-in
    cost more the more people were mapped.
    """
    from django_experience.models import ProfileMapping

    guard: contextlib.AbstractContextManager[None]
    if using is None:  # a read of the request: kept from aborting its transaction
        using = mapping_read_database()
        guard = kept_usable(using)
    else:  # inside the caller's transaction (store_mapping's), which handles a failure
        guard = contextlib.nullcontext()
    rows = ProfileMapping.objects.using(using).filter(**namespace())
    if for_update:
        rows = rows.select_for_update()
    mapping = None
    with guard:
        if user is not None and getattr(user, "pk", None) is not None:
            mapping = rows.filter(user=user).first()
        if mapping is None and external_id and unkeepable_external_id(external_id) is None:
            mapping = rows.filter(external_id=external_id).first()  # (no mapping keeps any other)
    return mapping


def store_mapping(profile_id: str, *, user: Any = None, external_id: str | None = None) -> str:
    """Record ``profile_id`` for a user and/or external id; the profile id now mapped.

    Safe against concurrent first sign-ins of one user: the row that was written first wins and
    its profile id is returned; the losing writer never raises.
    """
    from django.db import IntegrityError, OperationalError, transaction
    from django.utils import timezone

    from django_experience.models import ProfileMapping

    namespace_filter = namespace()
    has_user = user is not None and getattr(user, "pk", None) is not None
    unkeepable = unkeepable_external_id(external_id) if external_id else None
    if unkeepable is not None:
        # The same on every database (an import rejects such a row): the identify was sent,
        # the mapping ties the profile to the user alone.
        logger.warning(
            "Experience user id %s, which a profile mapping cannot keep: %s",
            unkeepable,
            "the profile is mapped to the user alone" if has_user else "the profile is not mapped",
        )
        external_id = None
    if not has_user and not external_id:
        return profile_id  # nobody to map it to
    # Every query of the transaction on the mappings' database: reads too, which a router
    # may send to a replica outside of it.
    using = mapping_database()
    mappings = ProfileMapping.objects.using(using)
    lost_races = busy_retries = 0
    while lost_races < 3:
        try:
            with transaction.atomic(using=using):
                mapping = owned_mapping(user, external_id, for_update=True, using=using)
                if mapping is not None and lost_races and valid_profile_id(mapping.profile_id):
                    return mapping.profile_id  # (a row whose id is not one takes ours below)
                holder = mappings.filter(profile_id=profile_id, **namespace_filter)
                if mapping is not None:
                    holder = holder.exclude(pk=mapping.pk)
                other = holder.first()
                if other is not None:
                    if other.user_id is not None or (
                        other.external_id and other.external_id != external_id
                    ):
                        # Somebody else's profile: never steal it.
                        return mapping.profile_id if mapping is not None else profile_id
                    other.delete(using=using)  # an anonymous row for this very profile: absorb it
                now = timezone.now()
                if mapping is None:
                    mappings.create(
                        profile_id=profile_id,
                        user=user if has_user else None,
                        external_id=external_id or None,
                        last_seen_at=now,
                        **namespace_filter,
                    )
                else:
                    mapping.profile_id = profile_id
                    if has_user:
                        mapping.user = user
                    if external_id:
                        mapping.external_id = external_id
                    mapping.last_seen_at = now
                    mapping.save(using=using)
            return profile_id
        except IntegrityError:
            lost_races += 1  # a concurrent sign-in wrote first: read its row and keep it
        except OperationalError:  # a busy database: the same attempt again, after a pause
            if not _may_retry_busy(busy_retries, using):
                raise
            busy_retries += 1
            time.sleep(random.uniform(0.5, 1.0) * BUSY_BACKOFF * 2**busy_retries)
    return profile_id


BUSY_RETRIES = 6
BUSY_BACKOFF = 0.01  # seconds; doubled each retry (about 1.3 s in all at most)


def _may_retry_busy(retries_so_far: int, using: str) -> bool:
    """Whether a write that failed on a busy database may be tried again.

    SQLite answers "database is locked" at once (whatever its busy timeout) when two writers
    deadlock upgrading their read locks, as concurrent first sign-ins do unless the connection
    begins transactions IMMEDIATE (Django 5.1+). Retrying the whole transaction resolves it;
    inside the caller's own transaction (on the mappings' database ``using``), though, the
    retry is the caller's to make.
    """
    from django.db import connections

    return retries_so_far < BUSY_RETRIES and not connections[using].in_atomic_block


def profile_owned_by_someone_else(profile_id: str, user: Any, external_id: str) -> bool:
    """Whether a mapping ties ``profile_id`` to a different user or external id."""
    from django_experience.models import ProfileMapping

    reading = mapping_read_database()
    with kept_usable(reading):
        row = (
            ProfileMapping.objects.using(reading)
            .filter(profile_id=profile_id, **namespace())
            .values("user_id", "external_id")
            .first()
        )
    if row is None:
        return False
    if user is not None and row["user_id"] is not None:
        return bool(row["user_id"] != user.pk)
    return bool(row["external_id"] and row["external_id"] != external_id)


__all__ = [
    "EXTERNAL_ID_MAX_LENGTH",
    "LAST_SEEN_RESOLUTION",
    "kept_usable",
    "mapped_profile_id",
    "mapping_database",
    "mapping_read_database",
    "namespace",
    "owned_mapping",
    "profile_owned_by_someone_else",
    "store_mapping",
    "unkeepable_external_id",
]
