"""Signal receivers of django-experience (sign-in identify, sign-out, user deletion).

Also defines ``profile_identified``, sent after a visitor was identified (sign-in or
``request.experience.identify``) with ``user_id``, ``traits``, ``profile_id`` and ``user``
(``None`` for people who are not Django users), so other parts (profile destinations, the site's
own code) can react without the request waiting for them.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.db.models.signals import pre_delete
from django.dispatch import Signal, receiver
from django.http import HttpRequest
from django.test.signals import setting_changed

from django_experience.conf import conf

logger = logging.getLogger("django_experience")

profile_identified = Signal()
"""Sent with ``user_id``, ``traits``, ``profile_id`` and ``user`` after an identify succeeded."""


@receiver(setting_changed, dispatch_uid="django_experience.settings_changed")
def reset_breaker_on_new_settings(sender: Any, setting: str = "", **kwargs: Any) -> None:
    """New ``EXPERIENCE_*`` settings (tests, reconfiguration) start with a closed breaker."""
    if setting.startswith("EXPERIENCE_"):
        from django_experience.breaker import breaker

        breaker.reset()


@receiver(user_logged_in, dispatch_uid="django_experience.identify_on_login")
def identify_on_login(
    sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any
) -> None:
    """Identify the signed-in user on the device's profile; map and cookie the answer's id."""
    if request is None or user is None:
        return
    from django_experience.personalization import get_experience
    from django_experience.visitor import visitor_for

    visitor = visitor_for(request)
    if visitor.excluded:
        return  # not seen by the middleware, or excluded: identified on the first page instead
    try:
        result = visitor.sign_in(user)
    except Exception:  # signing in must never fail because of personalization
        logger.exception("Experience identify on sign-in failed")
        return
    if result is not None:
        experience = get_experience(request)
        if not experience.is_null:
            experience.adopt(result)


@receiver(user_logged_out, dispatch_uid="django_experience.forget_on_logout")
def forget_on_logout(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    """Start a fresh anonymous profile so the next person at the device inherits nothing."""
    if request is None:
        return
    from django_experience.personalization import get_experience
    from django_experience.visitor import visitor_for

    visitor_for(request).sign_out()
    experience = get_experience(request)
    if not experience.is_null:
        experience.forget()


@receiver(pre_delete, sender=settings.AUTH_USER_MODEL, dispatch_uid="django_experience.user_del")
def delete_remote_profiles(
    sender: Any, instance: Any, using: str | None = None, **kwargs: Any
) -> None:
    """With ``EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE``: delete the user's remote profiles.

    Each mapped profile (whatever its organization and environment: the mappings go with the
    user) is recorded as a ``PendingProfileDeletion`` in the deletion's own transaction, so a
    rolled-back deletion leaves none and a committed one cannot lose them. Once the deletion
    commits, one DELETE per profile, on a background thread so that the request deleting the
    user does not wait for the API (in-line with the ``sync`` delivery backend: see
    ``deletions.delete_after_commit``; ``deletions.wait`` waits for the thread); what still
    fails stays pending for ``manage.py experience_delete_pending`` or the admin to retry.
    """
    if not conf.DELETE_REMOTE_ON_USER_DELETE:
        return
    from django.db import transaction

    from django_experience import deletions
    from django_experience.models import ProfileMapping

    profiles = [
        (str(profile_id), str(organization), str(environment))
        for profile_id, organization, environment in ProfileMapping.objects.using(using)
        .filter(user=instance)
        .values_list("profile_id", "organization_id", "environment")
    ]
    if profiles:
        deletions.record(profiles, using=using)
        transaction.on_commit(
            functools.partial(deletions.delete_after_commit, profiles, using=using), using=using
        )


def delete_profiles_remotely(
    profiles: list[tuple[str, str, str]], *, using: str | None = None
) -> int:
    """DELETE each pending ``(profile id, organization, environment)`` in the caller's thread;
    the number that failed (``deletions.delete_now``).

    Only the profiles still pending are sent (``deletions.delete_pending``: retried per the
    client's policy, a 404 counts as deleted); one that still fails is logged as an error
    naming the profile and keeps its pending row, to be retried. Never raises.
    """
    from django_experience import deletions

    return deletions.delete_now(profiles, using=using)


__all__ = [
    "delete_profiles_remotely",
    "delete_remote_profiles",
    "forget_on_logout",
    "identify_on_login",
    "profile_identified",
]
