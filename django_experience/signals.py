"""Signal receivers of django-experience (sign-in identify, sign-out, user deletion).

Also defines ``profile_identified``, sent after a visitor was identified (sign-in or
``request.experience.identify``) with ``user_id``, ``traits``, ``profile_id`` and ``user``
(``None`` for people who are not Django users), so other parts (profile destinations, the site's
own code) can react without the request waiting for them.
"""

from __future__ import annotations

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
def delete_remote_profiles(sender: Any, instance: Any, **kwargs: Any) -> None:
    """With ``EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE``: delete the user's remote profiles."""
    if not conf.DELETE_REMOTE_ON_USER_DELETE:
        return
    from django_experience.clients import experience_client
    from django_experience.models import ProfileMapping
    from django_experience.visitor import short_id

    profile_ids = list(
        ProfileMapping.objects.filter(
            user=instance, organization_id=conf.ORGANIZATION_ID, environment=conf.ENVIRONMENT
        ).values_list("profile_id", flat=True)
    )
    for profile_id in profile_ids:
        try:
            experience_client().delete_profile(profile_id)
        except Exception as exc:
            logger.warning(
                "Experience API delete failed for profile %s (%s)",
                short_id(profile_id),
                type(exc).__name__,
            )


__all__ = ["delete_remote_profiles", "forget_on_logout", "identify_on_login", "profile_identified"]
