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

    Once the deletion commits (a rolled-back deletion leaves the live profiles alone), one
    DELETE per mapped profile, each in its mapping's organization and environment (the
    mappings go with the user, whatever their namespace).
    """
    if not conf.DELETE_REMOTE_ON_USER_DELETE:
        return
    from django.db import transaction

    from django_experience.models import ProfileMapping

    profiles = [
        (str(profile_id), str(organization), str(environment))
        for profile_id, organization, environment in ProfileMapping.objects.using(using)
        .filter(user=instance)
        .values_list("profile_id", "organization_id", "environment")
    ]
    if profiles:
        transaction.on_commit(functools.partial(delete_profiles_remotely, profiles), using=using)


def delete_profiles_remotely(profiles: list[tuple[str, str, str]]) -> int:
    """DELETE each ``(profile id, organization, environment)``; the number that failed.

    Each DELETE is retried per the client's policy (``EXPERIENCE_MAX_RETRIES`` within
    ``EXPERIENCE_TIMEOUT``); one that still fails is logged as an error naming the profile, so
    that it can be deleted by hand (the mapping that knew it is gone with the user).
    """
    from django_experience.api.errors import ExperienceAPIError, NamespaceMismatch, ProfileNotFound
    from django_experience.clients import experience_client

    failed = 0
    for profile_id, organization, environment in profiles:
        try:
            client = experience_client(organization=organization, environment=environment)
            client.delete_profile(profile_id)
        except (ProfileNotFound, NamespaceMismatch):
            continue  # already gone
        except Exception as exc:
            failed += 1
            status = getattr(exc, "status", None) if isinstance(exc, ExperienceAPIError) else None
            logger.error(
                "Experience API delete of profile %s (organization %s, environment %s) of a "
                "deleted user failed (%s%s); the profile still exists remotely: delete it by hand",
                profile_id,
                organization or "-",
                environment or "-",
                type(exc).__name__,
                f" status={status}" if status is not None else "",
            )
    return failed


__all__ = [
    "delete_profiles_remotely",
    "delete_remote_profiles",
    "forget_on_logout",
    "identify_on_login",
    "profile_identified",
]
