"""The outbox of remote profile deletions: erasure requests that must not be lost.

Deleting a Django user (with ``EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE``) records one
:class:`~django_experience.models.PendingProfileDeletion` per mapped profile in the deletion's
own transaction (:func:`record`). Once it commits, and whenever ``manage.py
experience_delete_pending`` or the admin retries, :func:`delete_pending` sends one ``DELETE``
per row, in the row's own organization and environment: a row goes once its profile is deleted
(or the API says it is already gone); a failure keeps it, counting the attempt and keeping the
error's type and status (never anything of the profile).
"""

from __future__ import annotations

import functools
import logging
import operator
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from django.db.models import F, Q, QuerySet
from django.utils import timezone

from django_experience.models import PendingProfileDeletion

logger = logging.getLogger("django_experience")

Profile = tuple[str, str, str]
"""``(profile id, organization id, environment)``."""


class Outcome(NamedTuple):
    """What one pass of :func:`delete_pending` did, row by row."""

    deleted: list[PendingProfileDeletion]  # deleted remotely, or already gone: rows removed
    failed: list[PendingProfileDeletion]  # still pending: rows kept, with the attempt counted


def record(profiles: Sequence[Profile], *, using: str | None = None) -> None:
    """Remember each profile as pending deletion (one that already is stays as it is).

    Call it inside the transaction that deletes the person, so that both commit or neither.
    """
    PendingProfileDeletion.objects.using(using).bulk_create(
        [
            PendingProfileDeletion(
                profile_id=profile_id, organization_id=organization, environment=environment
            )
            for profile_id, organization, environment in profiles
        ],
        ignore_conflicts=True,
    )


def pending(
    profiles: Sequence[Profile] | None = None, *, using: str | None = None
) -> QuerySet[PendingProfileDeletion]:
    """The pending rows of these profiles (of every profile when ``None``), oldest first."""
    rows = PendingProfileDeletion.objects.using(using).all()
    if profiles is None:
        return rows
    if not profiles:
        return rows.none()
    return rows.filter(
        functools.reduce(
            operator.or_,
            (
                Q(profile_id=profile_id, organization_id=organization, environment=environment)
                for profile_id, organization, environment in profiles
            ),
        )
    )


def describe_error(exc: BaseException) -> str:
    """The error's type and HTTP status (``ServerError status=503``): no message, which might
    quote what was sent."""
    from django_experience.api.errors import ExperienceAPIError

    status = exc.status if isinstance(exc, ExperienceAPIError) else None
    text = type(exc).__name__ + (f" status={status}" if status is not None else "")
    return text[: PendingProfileDeletion._meta.get_field("last_error").max_length]


def delete_pending(rows: Iterable[PendingProfileDeletion]) -> Outcome:
    """Send the ``DELETE`` of each pending row; remove the rows of the profiles now gone.

    Each ``DELETE`` is retried per the client's policy (``EXPERIENCE_MAX_RETRIES`` within
    ``EXPERIENCE_TIMEOUT``). A 404 (profile not found, or of another namespace) means already
    gone. One that still fails keeps its row (``attempts`` + 1, ``last_attempt_at``,
    ``last_error``) and is logged as an error naming the profile, to be retried.
    """
    from django_experience.api.errors import NamespaceMismatch, ProfileNotFound
    from django_experience.clients import experience_client

    deleted: list[PendingProfileDeletion] = []
    failed: list[PendingProfileDeletion] = []
    for row in rows:
        same_row = PendingProfileDeletion.objects.using(row._state.db).filter(pk=row.pk)
        try:
            client = experience_client(
                organization=row.organization_id, environment=row.environment
            )
            client.delete_profile(row.profile_id)
        except (ProfileNotFound, NamespaceMismatch):
            pass  # already gone
        except Exception as exc:  # the API, or a row without a namespace: kept for a retry
            failed.append(row)
            error = describe_error(exc)
            same_row.update(
                attempts=F("attempts") + 1, last_attempt_at=timezone.now(), last_error=error
            )
            logger.error(
                "Experience API delete of profile %s (organization %s, environment %s) of a "
                "deleted user failed (%s, attempt %d); the profile still exists remotely: its "
                "deletion stays pending, to be retried by manage.py experience_delete_pending",
                row.profile_id,
                row.organization_id or "-",
                row.environment or "-",
                error,
                row.attempts + 1,
            )
            continue
        same_row.delete()
        deleted.append(row)
    return Outcome(deleted, failed)


__all__ = ["Outcome", "Profile", "delete_pending", "describe_error", "pending", "record"]
