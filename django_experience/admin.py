"""Admin of ``ProfileMapping``: find a visitor's profile, look at it live, delete it remotely.

The live profile is fetched from the Experience API only when asked for (its own page); an API
failure shows a message, never an error page. "Delete in the Experience API" sends one DELETE per
profile (the API has no batch delete) and removes the local mapping, for data-protection
requests; only users with the delete permission see it, and each deletion is logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_experience.api.errors import ProfileNotFound
from django_experience.api.types import ProfileResult
from django_experience.models import ProfileMapping
from django_experience.visitor import short_id

logger = logging.getLogger("django_experience")


class Fetched(NamedTuple):
    result: ProfileResult | None
    error: str | None = None
    missing: bool = False


def _fetch(profile_id: str) -> Fetched:
    """The live profile, or why there is none."""
    from django_experience.clients import experience_client

    try:
        return Fetched(experience_client().get_profile(profile_id))
    except ProfileNotFound:
        message = _("This profile does not exist in the Experience API (deleted or merged).")
        return Fetched(None, str(message), missing=True)
    except Exception as exc:  # an admin page must never fail because of the API
        logger.warning(
            "Experience API get failed for profile %s (%s)",
            short_id(profile_id),
            type(exc).__name__,
        )
        message = _("The Experience API could not be used: %(error)s")
        return Fetched(None, str(message) % {"error": type(exc).__name__})


def _log(request: HttpRequest, mapping: ProfileMapping, action_flag: int, message: str) -> None:
    content_type = ContentType.objects.get_for_model(ProfileMapping, for_concrete_model=False)
    user_id = request.user.pk
    assert user_id is not None  # admin views require a signed-in staff user
    LogEntry.objects.create(
        user_id=user_id,
        content_type_id=content_type.pk,
        object_id=str(mapping.pk),
        object_repr=str(mapping)[:200],
        action_flag=action_flag,
        change_message=message,
    )


if TYPE_CHECKING:
    _ModelAdmin = admin.ModelAdmin[ProfileMapping]
else:  # ModelAdmin is generic for the type checker only
    _ModelAdmin = admin.ModelAdmin


@admin.register(ProfileMapping)
class ProfileMappingAdmin(_ModelAdmin):
    list_display = (
        "profile_id",
        "user",
        "external_id",
        "environment",
        "organization_id",
        "last_seen_at",
        "updated_at",
    )
    list_filter = (
        "organization_id",
        "environment",
        ("user", admin.EmptyFieldListFilter),
        "last_seen_at",
        "created_at",
    )
    search_fields = ("profile_id", "external_id", "user__username", "user__email")
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("created_at", "updated_at", "last_seen_at", "live_profile")
    date_hierarchy = "created_at"
    actions = ["refresh_from_api", "delete_in_api"]
    change_form_template = "admin/django_experience/profilemapping/change_form.html"

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        return [
            path(
                "<path:object_id>/live/",
                self.admin_site.admin_view(self.live_profile_view),
                name="{}_{}_live".format(*info),
            ),
            *super().get_urls(),
        ]

    @admin.display(description=_("live profile"))
    def live_profile(self, obj: ProfileMapping) -> str:
        if obj.pk is None:
            return "-"
        url = reverse(
            f"{self.admin_site.name}:{self.opts.app_label}_{self.opts.model_name}_live",
            args=[obj.pk],
        )
        return format_html('<a href="{}">{}</a>', url, _("View the live profile"))

    def live_profile_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        mapping = get_object_or_404(ProfileMapping, pk=object_id)
        if not self.has_view_or_change_permission(request, mapping):
            raise PermissionDenied
        result, error, _missing = _fetch(mapping.profile_id)
        if error:
            messages.error(request, error)
        profile = result.profile if result else None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": mapping,
            "title": _("Live profile %(id)s") % {"id": mapping.profile_id},
            "profile": profile,
            "traits": sorted(profile.traits.items()) if profile else [],
            "location": sorted(profile.location.items()) if profile else [],
            "audiences": profile.audiences if profile else (),
            "session": profile.session if profile else None,
            "experiences": result.experiences if result else (),
            "changes": result.changes if result else (),
            "error": error,
        }
        return TemplateResponse(
            request, "admin/django_experience/profilemapping/live_profile.html", context
        )

    @admin.action(description=_("Refresh from the Experience API"), permissions=["change"])
    def refresh_from_api(self, request: HttpRequest, queryset: QuerySet[ProfileMapping]) -> None:
        refreshed, missing, failed = 0, 0, 0
        for mapping in queryset:
            fetched = _fetch(mapping.profile_id)
            if fetched.result is not None:
                mapping.save(update_fields=["updated_at"])
                _log(request, mapping, CHANGE, "Refreshed from the Experience API.")
                refreshed += 1
            elif fetched.missing:
                missing += 1
            else:
                failed += 1
        if refreshed:
            self.message_user(
                request,
                ngettext(
                    "%d profile refreshed from the Experience API.",
                    "%d profiles refreshed from the Experience API.",
                    refreshed,
                )
                % refreshed,
                messages.SUCCESS,
            )
        if missing:
            self.message_user(
                request,
                ngettext(
                    "%d profile no longer exists in the Experience API.",
                    "%d profiles no longer exist in the Experience API.",
                    missing,
                )
                % missing,
                messages.WARNING,
            )
        if failed:
            self.message_user(
                request,
                ngettext(
                    "%d profile could not be fetched: the Experience API failed.",
                    "%d profiles could not be fetched: the Experience API failed.",
                    failed,
                )
                % failed,
                messages.ERROR,
            )

    @admin.action(description=_("Delete in the Experience API"), permissions=["delete"])
    def delete_in_api(self, request: HttpRequest, queryset: QuerySet[ProfileMapping]) -> None:
        from django_experience.clients import experience_client

        client = experience_client()
        deleted, failed = 0, 0
        for mapping in queryset:
            try:
                client.delete_profile(mapping.profile_id)  # one DELETE per profile
            except ProfileNotFound:
                pass  # already gone remotely: still remove the mapping
            except Exception as exc:
                logger.warning(
                    "Experience API delete failed for profile %s (%s)",
                    short_id(mapping.profile_id),
                    type(exc).__name__,
                )
                failed += 1
                continue
            _log(request, mapping, DELETION, "Deleted in the Experience API.")
            mapping.delete()
            deleted += 1
        if deleted:
            self.message_user(
                request,
                ngettext(
                    "%d profile deleted in the Experience API.",
                    "%d profiles deleted in the Experience API.",
                    deleted,
                )
                % deleted,
                messages.SUCCESS,
            )
        if failed:
            self.message_user(
                request,
                ngettext(
                    "%d profile could not be deleted: the Experience API failed; "
                    "its mapping was kept.",
                    "%d profiles could not be deleted: the Experience API failed; "
                    "their mappings were kept.",
                    failed,
                )
                % failed,
                messages.ERROR,
            )

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        if object_id:
            info = self.admin_site.name, self.opts.app_label, self.opts.model_name
            extra_context["live_profile_url"] = reverse(
                "{}:{}_{}_live".format(*info), args=[object_id]
            )
        return super().changeform_view(request, object_id, form_url, extra_context)
