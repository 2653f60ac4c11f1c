"""The app's models.

``ProfileMapping`` ties a Django user (or any external id) to an Experience API profile id;
``PendingProfileDeletion`` remembers a remote profile of a deleted user until its ``DELETE``
succeeded (the outbox of erasure requests, see ``django_experience.deletions``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from django_experience.fields import IdentifierField
from django_experience.mappings import EXTERNAL_ID_MAX_LENGTH, PROFILE_ID_PATTERN

# The ids the cookie carries unquoted (valid_profile_id): an id typed in the admin that is not
# one would be refused when the visitor's cookie came back.
_profile_id_validator = RegexValidator(
    rf"\A{PROFILE_ID_PATTERN}\Z",
    _("A profile id is 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'."),
)


class ProfileMapping(models.Model):
    """One Experience API profile per user (or external id) per organization and environment."""

    profile_id = IdentifierField(
        _("profile id"), max_length=128, validators=[_profile_id_validator]
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="experience_profiles",
        verbose_name=_("user"),
    )
    # NULL, not "", for "no external id": the unique constraint must allow many of them.
    external_id = IdentifierField(
        _("external id"),
        max_length=EXTERNAL_ID_MAX_LENGTH,
        null=True,
        blank=True,
        help_text=_("The user id sent with identify events."),
    )
    organization_id = IdentifierField(_("organization id"), max_length=128)
    environment = IdentifierField(_("environment"), max_length=128, default="main")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("profile mapping")
        verbose_name_plural = _("profile mappings")
        ordering = ("-updated_at",)
        constraints = [
            models.UniqueConstraint(
                fields=("organization_id", "environment", "profile_id"),
                name="experience_unique_profile",
            ),
            models.UniqueConstraint(
                fields=("organization_id", "environment", "user"),
                name="experience_unique_user",
            ),
            models.UniqueConstraint(
                fields=("organization_id", "environment", "external_id"),
                name="experience_unique_external_id",
            ),
        ]
        indexes = [models.Index(fields=("external_id",), name="experience_external_id_idx")]

    def __str__(self) -> str:
        who = self.external_id or (str(self.user_id) if self.user_id else "anonymous")
        return f"{who} -> {self.profile_id}"


class PendingProfileDeletion(models.Model):
    """A remote profile of a deleted user that the Experience API has not deleted yet.

    Written in the same transaction as the user's deletion (a rolled-back deletion leaves none,
    a committed one cannot lose it) and removed once the ``DELETE`` succeeded or the API says
    the profile is already gone. ``last_error`` holds the error's type and HTTP status only,
    never anything of the profile.
    """

    profile_id = IdentifierField(_("profile id"), max_length=128)
    organization_id = IdentifierField(_("organization id"), max_length=128)
    environment = IdentifierField(_("environment"), max_length=128, default="main")
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_attempt_at = models.DateTimeField(_("last attempt at"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=200, blank=True, default="")

    class Meta:
        verbose_name = _("pending profile deletion")
        verbose_name_plural = _("pending profile deletions")
        ordering = ("created_at", "pk")
        constraints = [
            models.UniqueConstraint(
                fields=("organization_id", "environment", "profile_id"),
                name="experience_unique_pending_deletion",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile_id} ({self.organization_id}/{self.environment})"
