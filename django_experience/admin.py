"""Admin of ``ProfileMapping`` (find a visitor's profile, look at it live, delete it remotely)
and of ``PendingProfileDeletion`` (the remote deletions of deleted users' profiles still to do).

Every call goes to the mapping's own organization and environment (a ``staging`` mapping is
looked up in ``staging``). The live profile is fetched from the Experience API only when asked
for (its own page); an API failure, or a malformed id or mapping, shows a message or a 404,
never an error page. "Refresh from the Experience API" checks each mapping against the live
profile (and takes the id the API answers with); "Delete in the Experience API" sends one DELETE
per profile (the API has no batch delete) and removes the local mapping, for data-protection
requests; only users with the delete permission see it, and each deletion is logged.

Pending profile deletions are written by the system only (no add or change): "Retry deletion
in the Experience API" sends their DELETEs again (as ``manage.py experience_delete_pending``
does), and an operator who deleted a profile by hand may delete its row.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, NamedTuple

from django.contrib import admin, messages
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, models, router, transaction
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from django_experience import call_budget
from django_experience.api.errors import ExperienceAPIError, NamespaceMismatch, ProfileNotFound
from django_experience.api.types import ProfileResult
from django_experience.call_budget import CallBudget
from django_experience.deletions import delete_pending
from django_experience.mappings import answered_profile_id
from django_experience.models import PendingProfileDeletion, ProfileMapping
from django_experience.paging import in_pages
from django_experience.visitor import short_id

logger = logging.getLogger("django_experience")


class Fetched(NamedTuple):
    result: ProfileResult | None
    error: str | None = None
    missing: bool = False
    api_failed: bool = False  # the API failed the call (not: the mapping has no namespace)


def _client(mapping: ProfileMapping) -> ExperienceClient:
    """The client of the mapping's own organization and environment (``ValueError`` when the
    mapping has none: an imported or hand-edited row)."""
    from django_experience.clients import experience_client

    return experience_client(organization=mapping.organization_id, environment=mapping.environment)


def _fetch(mapping: ProfileMapping) -> Fetched:
    """The live profile, or why there is none."""
    try:
        result = _client(mapping).get_profile(mapping.profile_id)
        answered_profile_id(result.profile.id)  # a mapping will take it (refresh)
        return Fetched(result)
    except (ProfileNotFound, NamespaceMismatch):
        message = _("This profile does not exist in the Experience API (deleted or merged).")
        return Fetched(None, str(message), missing=True)
    except Exception as exc:  # an admin page must never fail because of the API
        logger.warning(
            "Experience API get failed for profile %s (%s)",
            short_id(mapping.profile_id),
            type(exc).__name__,
        )
        message = _("The Experience API could not be used: %(error)s")
        return Fetched(
            None,
            str(message) % {"error": type(exc).__name__},
            api_failed=isinstance(exc, ExperienceAPIError),
        )


def _report_untried(
    model_admin: admin.ModelAdmin[Any], request: HttpRequest, budget: CallBudget, untried: int
) -> None:
    """Tell how many selected rows the action stopped before (see ``call_budget``)."""
    if not untried:
        return
    if budget.exhausted_by == "failures":
        why = _("the Experience API failed %(count)d times in a row; try again later") % {
            "count": call_budget.FAILURES_IN_A_ROW
        }
    else:
        why = _("the action's %(seconds)g seconds were used up; run it again for the rest") % {
            "seconds": call_budget.SECONDS
        }
    model_admin.message_user(
        request,
        ngettext(
            "%(count)d selected row was not tried: %(why)s.",
            "%(count)d selected rows were not tried: %(why)s.",
            untried,
        )
        % {"count": untried, "why": why},
        messages.WARNING,
    )


def _report_deleted(model_admin: admin.ModelAdmin[Any], request: HttpRequest, count: int) -> None:
    model_admin.message_user(
        request,
        ngettext(
            "%d profile deleted in the Experience API.",
            "%d profiles deleted in the Experience API.",
            count,
        )
        % count,
        messages.SUCCESS,
    )


def _log(request: HttpRequest, obj: models.Model, action_flag: int, message: str) -> None:
    content_type = ContentType.objects.get_for_model(type(obj), for_concrete_model=False)
    user_id = request.user.pk
    assert user_id is not None  # admin views require a signed-in staff user
    LogEntry.objects.create(
        user_id=user_id,
        content_type_id=content_type.pk,
        object_id=str(obj.pk),
        object_repr=str(obj)[:200],
        action_flag=action_flag,
        change_message=message,
    )


if TYPE_CHECKING:
    from django_experience.api import ExperienceClient

    _ModelAdmin = admin.ModelAdmin[ProfileMapping]
    _PendingAdmin = admin.ModelAdmin[PendingProfileDeletion]
else:  # ModelAdmin is generic for the type checker only
    _ModelAdmin = _PendingAdmin = admin.ModelAdmin


def without_nul_parameters(request: HttpRequest) -> HttpResponse | None:
    """A redirect to the changelist without the search or filter values that hold a NUL
    character, with a message naming them; ``None`` when there are none.

    No id holds one (``mappings.unkeepable_external_id``), and PostgreSQL refuses any text
    that does, so the changelist would answer 500 there, and on other databases find nothing.
    """
    refused = [
        name for name, values in request.GET.lists() if any("\x00" in value for value in values)
    ]
    if not refused:
        return None
    kept = request.GET.copy()
    for name in refused:
        del kept[name]
    messages.error(
        request,
        _("Ignored %(names)s: a search or filter cannot hold a NUL character.")
        % {"names": ", ".join(refused)},
    )
    return HttpResponseRedirect(f"{request.path}?{kept.urlencode()}" if kept else request.path)


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
    search_fields = ("profile_id", "external_id")  # and the user's, see get_search_fields
    list_select_related = ("user",)
    raw_id_fields = ("user",)
    readonly_fields = ("created_at", "updated_at", "last_seen_at", "live_profile")
    # Newest first, through the primary key's index. The model's "-updated_at" would sort the
    # whole table for every page, and a date hierarchy (the created_at filter does its job)
    # truncated every row's date in Python on SQLite: 1.3 s a page at 200,000 mappings.
    ordering = ("-pk",)
    # A search or filter counts its own results only, not the whole table again (PostgreSQL
    # counts by reading every row).
    show_full_result_count = False
    actions = ["refresh_from_api", "delete_in_api"]
    change_form_template = "admin/django_experience/profilemapping/change_form.html"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return without_nul_parameters(request) or super().changelist_view(request, extra_context)

    def get_search_fields(self, request: HttpRequest) -> tuple[str, ...]:
        """Also the user's username and e-mail, by whatever names the user model gives them
        (a custom model may have no ``username``, or call its e-mail field otherwise)."""
        user_model = get_user_model()
        names = {field.name for field in user_model._meta.get_fields()}
        own = [
            f"user__{name}"
            for name in dict.fromkeys(
                (user_model.USERNAME_FIELD, user_model.get_email_field_name())
            )
            if name in names
        ]
        return (*self.search_fields, *own)

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
        request.current_app = self.admin_site.name
        mapping = self.get_object(request, unquote(object_id))  # None for a malformed id too
        if mapping is None:
            raise Http404(_("No such profile mapping."))
        if not self.has_view_or_change_permission(request, mapping):
            raise PermissionDenied
        fetched = _fetch(mapping)
        result = fetched.result
        if fetched.error:
            messages.error(request, fetched.error)
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
            "error": fetched.error,
        }
        return TemplateResponse(
            request, "admin/django_experience/profilemapping/live_profile.html", context
        )

    @admin.action(description=_("Refresh from the Experience API"), permissions=["change"])
    def refresh_from_api(self, request: HttpRequest, queryset: QuerySet[ProfileMapping]) -> None:
        """Check each mapping against the live profile (in the mapping's own namespace).

        A profile that exists is confirmed; when the API answers with another id (the profile
        was merged into the one it answers with), the mapping takes that id, as the visitor's
        cookie would. A profile that no longer exists is reported by id; its mapping is kept
        (delete it, or let the user's next visit replace it).
        """
        confirmed, moved, missing, failed = 0, 0, [], 0
        budget, selected = CallBudget(), queryset.count()
        for mapping in in_pages(queryset):
            if not budget.allows():
                break
            fetched = _fetch(mapping)
            budget.record(api_failed=fetched.api_failed)
            if fetched.result is None:
                if fetched.missing:
                    missing.append(mapping.profile_id)
                else:
                    failed += 1
                continue
            profile = fetched.result.profile
            if profile.id != mapping.profile_id and self._take_profile_id(mapping, profile.id):
                _log(
                    request,
                    mapping,
                    CHANGE,
                    f"Refreshed from the Experience API: the profile id is now {profile.id}.",
                )
                moved += 1
                continue
            _log(
                request,
                mapping,
                CHANGE,
                "Refreshed from the Experience API: the profile exists "
                f"({len(profile.audiences)} audiences, {len(fetched.result.experiences)} "
                "experiences).",
            )
            confirmed += 1
        if confirmed:
            self.message_user(
                request,
                ngettext(
                    "%d profile refreshed: it exists in the Experience API.",
                    "%d profiles refreshed: they exist in the Experience API.",
                    confirmed,
                )
                % confirmed,
                messages.SUCCESS,
            )
        if moved:
            self.message_user(
                request,
                ngettext(
                    "%d mapping now has the profile id the Experience API answers with.",
                    "%d mappings now have the profile id the Experience API answers with.",
                    moved,
                )
                % moved,
                messages.SUCCESS,
            )
        if missing:
            shown = ", ".join(missing[:20]) + (", …" if len(missing) > 20 else "")
            self.message_user(
                request,
                ngettext(
                    "%(count)d profile no longer exists in the Experience API (deleted or "
                    "merged): %(ids)s. Its mapping was kept; the user gets a new profile on "
                    "their next visit.",
                    "%(count)d profiles no longer exist in the Experience API (deleted or "
                    "merged): %(ids)s. Their mappings were kept; each user gets a new profile "
                    "on their next visit.",
                    len(missing),
                )
                % {"count": len(missing), "ids": shown},
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
        _report_untried(
            self, request, budget, selected - confirmed - moved - len(missing) - failed
        )

    @staticmethod
    def _take_profile_id(mapping: ProfileMapping, profile_id: str) -> bool:
        """Give ``mapping`` the id the API answered with, unless another mapping has it (the
        unique constraint on the namespace's profile ids says so)."""
        previous, mapping.profile_id = mapping.profile_id, profile_id
        try:
            # A savepoint where the mapping lives: a router may keep it out of "default".
            using = mapping._state.db or router.db_for_write(ProfileMapping, instance=mapping)
            with transaction.atomic(using=using):
                mapping.save(using=using, update_fields=["profile_id", "updated_at"])
        except IntegrityError:
            mapping.profile_id = previous  # the object stays what the database holds
            return False
        return True

    @admin.action(description=_("Delete in the Experience API"), permissions=["delete"])
    def delete_in_api(self, request: HttpRequest, queryset: QuerySet[ProfileMapping]) -> None:
        deleted, failed = 0, 0
        budget, selected = CallBudget(), queryset.count()
        for mapping in in_pages(queryset):
            if not budget.allows():
                break
            try:
                # One DELETE per profile, in the mapping's own organization and environment.
                _client(mapping).delete_profile(mapping.profile_id)
            except (ProfileNotFound, NamespaceMismatch):
                pass  # already gone remotely: still remove the mapping
            except Exception as exc:  # the API, or a mapping without a namespace
                logger.warning(
                    "Experience API delete failed for profile %s (%s)",
                    short_id(mapping.profile_id),
                    type(exc).__name__,
                )
                budget.record(api_failed=isinstance(exc, ExperienceAPIError))
                failed += 1
                continue
            budget.record(api_failed=False)
            _log(request, mapping, DELETION, "Deleted in the Experience API.")
            mapping.delete()
            deleted += 1
        if deleted:
            _report_deleted(self, request, deleted)
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
        _report_untried(self, request, budget, selected - deleted - failed)

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


@admin.register(PendingProfileDeletion)
class PendingProfileDeletionAdmin(_PendingAdmin):
    """Read-only: the rows are the system's record of deletions still to do."""

    list_display = ("short_profile_id", "namespace", "attempts", "last_error", "created_at")
    list_filter = ("organization_id", "environment", "created_at")
    search_fields = ("profile_id",)
    readonly_fields = (
        "profile_id",
        "organization_id",
        "environment",
        "created_at",
        "attempts",
        "last_attempt_at",
        "last_error",
    )
    actions = ["retry_deletion"]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return without_nul_parameters(request) or super().changelist_view(request, extra_context)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(
        self, request: HttpRequest, obj: PendingProfileDeletion | None = None
    ) -> bool:
        return False

    @admin.display(description=_("profile id"), ordering="profile_id")
    def short_profile_id(self, obj: PendingProfileDeletion) -> str:
        return short_id(obj.profile_id)

    @admin.display(description=_("namespace"), ordering="organization_id")
    def namespace(self, obj: PendingProfileDeletion) -> str:
        return f"{obj.organization_id or '-'} / {obj.environment or '-'}"

    @admin.action(description=_("Retry deletion in the Experience API"), permissions=["delete"])
    def retry_deletion(
        self, request: HttpRequest, queryset: QuerySet[PendingProfileDeletion]
    ) -> None:
        """Send the selected rows' DELETEs again; a deleted (or already gone) profile's row is
        removed and logged, a failed one stays pending with its attempt counted."""
        budget, selected = CallBudget(), queryset.count()
        outcome = delete_pending(in_pages(queryset), budget=budget)
        for row in outcome.deleted:
            _log(request, row, DELETION, "Deleted in the Experience API (pending deletion).")
        deleted, failed = len(outcome.deleted), len(outcome.failed)
        if deleted:
            _report_deleted(self, request, deleted)
        if failed:
            self.message_user(
                request,
                ngettext(
                    "%d profile could not be deleted: the Experience API failed; its deletion "
                    "stays pending.",
                    "%d profiles could not be deleted: the Experience API failed; their "
                    "deletions stay pending.",
                    failed,
                )
                % failed,
                messages.ERROR,
            )
        _report_untried(self, request, budget, selected - deleted - failed)
