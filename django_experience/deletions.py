"""The outbox of remote profile deletions: erasure requests that must not be lost.

Deleting a Django user (with ``EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE``) records one
:class:`~django_experience.models.PendingProfileDeletion` per mapped profile in the deletion's
own transaction (:func:`record`). Once it commits, and whenever ``manage.py
experience_delete_pending`` or the admin retries, :func:`delete_pending` sends one ``DELETE``
per row, in the row's own organization and environment: a row goes once its profile is deleted
(or the API says it is already gone); a failure keeps it, counting the attempt and keeping the
error's type and status (never anything of the profile).

After the deletion commits, :func:`delete_after_commit` sends those deletes on a background
thread of this process (the request that deleted the user does not wait for the API), or
in-line with the ``sync`` delivery backend. :func:`wait` waits for the ones handed to the
thread; at interpreter exit they are waited for ``EXPERIENCE_DELIVERY_EXIT_TIMEOUT`` at most,
and what is left stays pending in the database (nothing is lost: the rows are the outbox).
"""

from __future__ import annotations

import atexit
import functools
import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from django.db.models import Count, F, Min, Q, QuerySet
from django.utils import timezone

from django_experience.call_budget import CallBudget
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


def delete_pending(
    rows: Iterable[PendingProfileDeletion], *, budget: CallBudget | None = None
) -> Outcome:
    """Send the ``DELETE`` of each pending row; remove the rows of the profiles now gone.

    With a ``budget`` (an admin action's), the rows after it is exhausted are left untried.

    Each ``DELETE`` is retried per the client's policy (``EXPERIENCE_MAX_RETRIES`` within
    ``EXPERIENCE_TIMEOUT``). A 404 (profile not found, or of another namespace) means already
    gone. One that still fails keeps its row (``attempts`` + 1, ``last_attempt_at``,
    ``last_error``) and is logged as an error naming the profile, to be retried.
    """
    from django_experience.api.errors import ExperienceAPIError, NamespaceMismatch, ProfileNotFound
    from django_experience.clients import experience_client

    deleted: list[PendingProfileDeletion] = []
    failed: list[PendingProfileDeletion] = []
    for row in rows:
        if budget is not None and not budget.allows():
            break
        same_row = PendingProfileDeletion.objects.using(row._state.db).filter(pk=row.pk)
        try:
            client = experience_client(
                organization=row.organization_id, environment=row.environment
            )
            client.delete_profile(row.profile_id)
        except (ProfileNotFound, NamespaceMismatch):
            pass  # already gone
        except Exception as exc:  # the API, or a row without a namespace: kept for a retry
            if budget is not None:
                budget.record(api_failed=isinstance(exc, ExperienceAPIError))
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
        if budget is not None:
            budget.record(api_failed=False)
        same_row.delete()
        deleted.append(row)
    return Outcome(deleted, failed)


# -- after the user's deletion commits ---------------------------------------------------------


def delete_after_commit(profiles: Sequence[Profile], *, using: str | None = None) -> None:
    """Delete the profiles still pending of ``profiles`` remotely; never raises.

    The ``on_commit`` callback of a user's deletion: it runs in the request that deleted the
    user, which must not wait up to ``EXPERIENCE_TIMEOUT`` per profile while the API is down,
    so the deletes go to this process's background deleter (:func:`wait` waits for it).

    In-line instead (:func:`delete_now`) in two cases (decided when the deletion commits, so
    ``override_settings`` applies):

    - The ``sync`` delivery backend (``EXPERIENCE_DELIVERY``). It is the setting that already
      means "no background threads in this process; do the network work in the caller", for
      tests and scripts, where deletions too should be deterministic: done when ``delete()``
      returns. ``thread`` and ``tasks`` both run an in-process thread already; a Django Task
      per deletion would add nothing the outbox rows do not already give (they survive a
      crash, and ``manage.py experience_delete_pending`` retries them).
    - ``using``'s connection is still in a transaction: the callback was run before the outer
      transaction committed (``captureOnCommitCallbacks(execute=True)`` in a ``TestCase``), so
      the thread's own connection could not see the rows yet and would delete nothing.
    """
    try:
        from django.db import connections, router

        from django_experience.delivery.settings import delivery_settings

        alias = using or router.db_for_write(PendingProfileDeletion)
        if delivery_settings.BACKEND == "sync" or connections[alias].in_atomic_block:
            delete_now(profiles, using=using)
        else:
            delete_in_background(profiles, using=using)
    except Exception:  # the user's deletion has committed: it must not fail now
        logger.exception(
            "Experience API deletes of %d profile(s) of a deleted user could not be started; "
            "they stay pending, to be retried by manage.py experience_delete_pending",
            len(profiles),
        )


def delete_now(profiles: Sequence[Profile], *, using: str | None = None) -> int:
    """:func:`delete_pending` on the rows still pending of ``profiles``, in the caller's thread;
    the number that failed. Never raises.

    Each failure is logged as an error naming the profile (by :func:`delete_pending`), then one
    warning says how many deletions are pending in all and since when (:func:`warn_backlog`).
    """
    try:
        failed = len(delete_pending(pending(profiles, using=using)).failed)
    except Exception:
        logger.exception(
            "Experience API deletes of %d profile(s) of a deleted user could not be attempted; "
            "they stay pending, to be retried by manage.py experience_delete_pending",
            len(profiles),
        )
        return len(profiles)
    if failed:
        warn_backlog(using=using)
    return failed


def warn_backlog(*, using: str | None = None) -> None:
    """Log one warning: how many deletions are pending in all, how old the oldest is, and the
    command that retries them (a deleted user's data still exists remotely: an operator must
    see it pile up). Never raises."""
    try:
        from django.db import DEFAULT_DB_ALIAS

        backlog = pending(using=using).aggregate(count=Count("pk"), oldest=Min("created_at"))
        count, oldest = backlog["count"], backlog["oldest"]
        if not count:
            return
        age = format_age((timezone.now() - oldest).total_seconds()) if oldest else "?"
        database = "" if using in (None, DEFAULT_DB_ALIAS) else f" --database {using}"
        logger.warning(
            "%d remote profile deletion(s) of deleted users are pending in all, the oldest has "
            "waited %s: those people's profiles still exist in the Experience API. Run manage.py "
            "experience_delete_pending%s (or the admin's retry action) once the API answers",
            count,
            age,
            database,
        )
    except Exception:
        logger.exception("The pending remote profile deletions could not be counted")


def format_age(seconds: float) -> str:
    """``45 s``, ``12 min``, ``5 h``, ``3 days``: rounded down, to the unit that reads best."""
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{int(seconds)} s"
    if seconds < 120 * 60:
        return f"{int(seconds // 60)} min"
    if seconds < 48 * 3600:
        return f"{int(seconds // 3600)} h"
    return f"{int(seconds // 86400)} days"


# -- the background deleter ----------------------------------------------------------------

ROUND_PROFILES = 100
"""Profiles per round at most: one query (a condition per profile) and one connection each."""


class _Job(NamedTuple):
    profiles: tuple[Profile, ...]
    using: str | None


class BackgroundDeleter:
    """A queue of deletions handed off after commit, and the daemon thread that sends them.

    One per process (:func:`delete_in_background`): started on first use, and afresh in a
    forked child, whose copy of the parent's queue is the parent's to send. Daemon, so a
    ``DELETE`` waiting on a black-holed API never holds up the interpreter's exit (which waits
    a bounded time, :func:`_wait_at_exit`).
    """

    def __init__(self, name: str = "experience-deletions") -> None:
        self.pid = os.getpid()
        self._name = name
        self._cond = threading.Condition(threading.Lock())
        self._jobs: deque[_Job] = deque()
        self._in_flight = 0  # profiles queued or in the round being sent
        self._thread: threading.Thread | None = None

    def put(self, profiles: Sequence[Profile], using: str | None) -> bool:
        """Queue ``profiles``; False (nothing queued) when no thread could be started."""
        with self._cond:
            if not self._ensure_thread():
                return False
            self._jobs.append(_Job(tuple(profiles), using))
            self._in_flight += len(profiles)
            self._cond.notify_all()
        return True

    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    def wait(self, timeout: float | None = None) -> bool:
        """True once nothing is queued or being sent; False when ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._in_flight:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def _ensure_thread(self) -> bool:
        """Start the thread when it is not running (called with the lock held)."""
        if self._thread is not None and self._thread.is_alive():
            return True
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        try:
            thread.start()
        except RuntimeError:  # "can't start new thread", or the interpreter is shutting down
            return False
        self._thread = thread
        return True

    def _take_round(self) -> list[_Job]:
        """Block until there is a job; it and the next ones, up to :data:`ROUND_PROFILES`."""
        with self._cond:
            while not self._jobs:
                self._cond.wait()
            jobs = [self._jobs.popleft()]
            count = len(jobs[0].profiles)
            while self._jobs and count + len(self._jobs[0].profiles) <= ROUND_PROFILES:
                jobs.append(self._jobs.popleft())
                count += len(jobs[-1].profiles)
            return jobs

    def _run(self) -> None:
        while True:
            jobs = self._take_round()
            try:
                self._send_round(jobs)
            except Exception:  # a bug must not stop the thread: the rows are still pending
                logger.exception("The background deletion of %d profile(s) failed", len(jobs))
            finally:
                with self._cond:
                    self._in_flight -= sum(len(job.profiles) for job in jobs)
                    self._cond.notify_all()

    def _send_round(self, jobs: list[_Job]) -> None:
        by_alias: dict[str | None, dict[Profile, None]] = {}
        for job in jobs:
            by_alias.setdefault(job.using, {}).update(dict.fromkeys(job.profiles))
        # A thread's connections are its own and no request ever ends here to close them: as
        # Django does around a request (and delivery's task thread around a round), the
        # unusable ones or those past CONN_MAX_AGE (by default: all) are closed.
        _close_old_connections()
        try:
            for using, profiles in by_alias.items():
                delete_now(list(profiles), using=using)
        finally:
            _close_old_connections()


def _close_old_connections() -> None:
    from django.db import close_old_connections

    try:
        close_old_connections()
    except Exception:  # a connection that fails to close must not lose the round
        logger.exception("Closing the background deleter's database connections failed")


_lock = threading.Lock()
_deleter = BackgroundDeleter()
_atexit_registered = False


def _process_deleter() -> BackgroundDeleter:
    """This process's deleter; a fresh one in a forked child (also when forked from C code,
    which skips ``register_at_fork``)."""
    global _deleter
    if _deleter.pid != os.getpid():
        _deleter = BackgroundDeleter()
    return _deleter


def delete_in_background(profiles: Sequence[Profile], *, using: str | None = None) -> None:
    """Hand ``profiles`` to this process's background deleter, which sends the ``DELETE`` of
    each row still pending (:func:`delete_now`) on its own thread, with ``using``'s database.
    Never blocks on the network, never raises."""
    global _atexit_registered
    if not profiles:
        return
    try:
        with _lock:
            if not _atexit_registered:
                atexit.register(_wait_at_exit)
                _atexit_registered = True
        if not _process_deleter().put(profiles, using):
            logger.warning(
                "No thread could be started for the Experience API deletes of %d profile(s) "
                "of a deleted user; they stay pending, to be retried by manage.py "
                "experience_delete_pending",
                len(profiles),
            )
    except Exception:
        logger.exception(
            "Experience API deletes of %d profile(s) of a deleted user could not be handed to "
            "the background; they stay pending, to be retried by manage.py "
            "experience_delete_pending",
            len(profiles),
        )


def in_flight() -> int:
    """Profiles this process's background deleter has queued or is deleting."""
    return _process_deleter().in_flight()


def wait(timeout: float | None = None) -> bool:
    """Wait for the deletions this process handed to the background (:func:`delete_after_commit`)
    to be sent; True when none is left in flight, False when ``timeout`` seconds passed first.

    Each ``DELETE`` ends within ``EXPERIENCE_TIMEOUT``, so ``timeout=None`` ends too. Sent
    does not mean deleted: one that failed is still pending (see :func:`pending`).
    """
    return _process_deleter().wait(timeout)


def _wait_at_exit() -> None:
    """Give the background deletions what is left of ``EXPERIENCE_DELIVERY_EXIT_TIMEOUT`` (one
    budget, shared with delivery's exit flush) to end, then leave the rest: their rows are
    pending in the database, for the next retry."""
    try:
        deleter = _deleter
        if deleter.pid != os.getpid():
            return
        from django_experience.delivery import exit_seconds_left

        if deleter.wait(exit_seconds_left()):
            return
        left = deleter.in_flight()
        if left:
            logger.warning(
                "Exiting with the Experience API deletes of %d profile(s) of deleted users not "
                "done; they are safe in the database, pending, to be retried by manage.py "
                "experience_delete_pending",
                left,
            )
    except Exception:  # never turn an exit into a traceback
        logger.exception("The background deletions could not be waited for at exit")


def _after_fork() -> None:
    """In a forked child: the parent's thread does not exist here, and its lock may have been
    held by it."""
    global _deleter, _lock
    _deleter = BackgroundDeleter()
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


__all__ = [
    "BackgroundDeleter",
    "Outcome",
    "Profile",
    "delete_after_commit",
    "delete_in_background",
    "delete_now",
    "delete_pending",
    "describe_error",
    "format_age",
    "in_flight",
    "pending",
    "record",
    "wait",
    "warn_backlog",
]
