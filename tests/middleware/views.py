"""Views the middleware tests request through Django's test client."""

from __future__ import annotations

import json
import time
from collections.abc import Callable

from django.contrib.auth import authenticate, get_user_model, login, logout
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import engines
from django.views.decorators.cache import cache_control, cache_page
from django.views.decorators.vary import vary_on_cookie

from django_experience.personalization import get_experience


def _summary(request: HttpRequest) -> dict[str, object]:
    experience = get_experience(request)
    variant = experience.variant("hero-default")
    profile = experience.profile
    return {
        "hero": variant.entry_id if variant else "hero-default",
        "cta": experience.change("ctaColor", "blue"),
        "name": experience.merge_tag("traits.firstname", "friend"),
        "degraded": experience.degraded,
        "profile": profile.id if profile else None,
    }


def page(request: HttpRequest) -> JsonResponse:
    """A personalized page."""
    return JsonResponse(_summary(request))


#: Set by the prefetch tests: whether the API has received this page's update (it may wait a
#: moment for it), asked as the view starts, before it reads any personalization.
API_CALLED: list[Callable[[], bool]] = []


def prefetch_probe(request: HttpRequest) -> HttpResponse:
    """A page that personalizes (``?plain`` once: it does not), saying whether its update
    reached the API before the view ran."""
    called = API_CALLED[0]() if API_CALLED else None
    time.sleep(float(request.GET.get("work", 0)))  # the view's own work
    if "plain" in request.GET:
        return JsonResponse({"called_before_view": called})
    return JsonResponse({**_summary(request), "called_before_view": called})


def plain(request: HttpRequest) -> HttpResponse:
    """A page that never asks for personalization."""
    return HttpResponse("plain")


def cached(request: HttpRequest) -> JsonResponse:
    response = JsonResponse(_summary(request))
    response["Cache-Control"] = "public, max-age=60"
    response["Vary"] = "Accept-Language"
    return response


# Django's own caches store what the view returned, before the middleware marks it private.
cache_page_unsafe = cache_page(60, key_prefix="unsafe")(page)
# The README's recipe: one cached copy per visitor (vary_on_cookie, innermost), and every
# response private, cache hits too (cache_control outermost: the middleware cannot tell a hit
# is personalized, as the view did not run).
cache_page_per_visitor = cache_control(private=True)(
    cache_page(60, key_prefix="per-visitor")(vary_on_cookie(page))
)

FRAGMENTS = """{% load cache experience %}\
{% cache 60 greeting %}name={% merge_tag "traits.firstname" fallback="friend" %}{% endcache %}
{% experience_change "ctaColor" default="blue" as cta %}\
{% cache 60 cta_button cta %}cta={{ cta }}{% endcache %}"""


def cached_fragments(request: HttpRequest) -> HttpResponse:
    """One fragment cached for everyone (wrong), one cached per selected value (right)."""
    return HttpResponse(engines["django"].from_string(FRAGMENTS).render({}, request))


def track(request: HttpRequest) -> HttpResponse:
    get_experience(request).track("Added to cart", {"sku": "shoe-1"})
    return HttpResponse("tracked")


def identify(request: HttpRequest) -> JsonResponse:
    body = json.loads(request.body or b"{}")
    get_experience(request).identify(body["user_id"], body.get("traits"))
    return JsonResponse(_summary(request))


def identify_on_get(request: HttpRequest) -> JsonResponse:
    """A personalized page that identifies the visitor (a newsletter link with a CRM id)."""
    get_experience(request).identify(request.GET["user_id"], {"firstname": "Grace"})
    return JsonResponse(_summary(request))


def read_then_identify(request: HttpRequest) -> JsonResponse:
    """Reads personalization, then identifies the visitor (a second call in one request)."""
    experience = get_experience(request)
    before = experience.degraded
    time.sleep(float(request.GET.get("pause", 0)))  # the view's own work
    experience.identify(request.GET.get("user_id", "crm-9"), {"firstname": "Grace"})
    return JsonResponse({**_summary(request), "degraded_before": before})


def sign_in(request: HttpRequest) -> HttpResponse:
    user = authenticate(request, username=request.POST["username"], password="pw")
    assert user is not None
    login(request, user)
    return HttpResponse("signed in")


def sign_in_and_render(request: HttpRequest) -> JsonResponse:
    """Sign in on a GET (a magic link) and render personalized content in the same request."""
    user = authenticate(request, username=request.GET["username"], password="pw")
    assert user is not None
    login(request, user)
    return JsonResponse(_summary(request))


def personalize_then_query(request: HttpRequest) -> JsonResponse:
    """Sign in when asked (``?username=``), render personalized content, then query the
    database: under ``ATOMIC_REQUESTS`` the query runs in the transaction personalization did."""
    if "username" in request.GET:
        user = authenticate(request, username=request.GET["username"], password="pw")
        assert user is not None
        login(request, user)
    summary = _summary(request)
    return JsonResponse({**summary, "users": get_user_model().objects.count()})


def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("signed out")


async def async_page(request: HttpRequest) -> JsonResponse:
    experience = get_experience(request)
    await experience.aload()
    variant = experience.variant("hero-default")
    return JsonResponse(
        {"hero": variant.entry_id if variant else "hero-default", "degraded": experience.degraded}
    )


async def async_sync_read(request: HttpRequest) -> JsonResponse:
    """Reads personalization synchronously on the event loop (it must still work)."""
    experience = get_experience(request)
    return JsonResponse({"cta": experience.change("ctaColor", "blue")})


async def async_plain(request: HttpRequest) -> HttpResponse:
    return HttpResponse("plain")


def user_traits(user: object) -> dict[str, object]:
    """EXPERIENCE_USER_TRAITS of the tests: first name, and gold for staff."""
    return {
        "firstname": getattr(user, "first_name", ""),
        "tier": "gold" if getattr(user, "is_staff", False) else "basic",
    }


def user_id(user: object) -> str:
    """EXPERIENCE_USER_ID of the tests."""
    return f"user-{getattr(user, 'pk', '')}"


def no_consent(request: HttpRequest) -> bool:
    return False


def consent_from_cookie(request: HttpRequest) -> bool:
    return request.COOKIES.get("consent") == "yes"


class SiteAuthenticationMiddleware(AuthenticationMiddleware):
    """A site's own authentication middleware (the checks accept subclasses)."""


async def async_sign_in(request: HttpRequest) -> HttpResponse:
    # aauthenticate/alogin are Django 5.0+; the same calls through sync_to_async before that.
    from asgiref.sync import sync_to_async
    from django.contrib.auth import authenticate, login

    user = await sync_to_async(authenticate)(
        request, username=request.POST["username"], password="pw"
    )
    assert user is not None
    await sync_to_async(login)(request, user)
    return HttpResponse("signed in")


async def async_track_and_identify(request: HttpRequest) -> JsonResponse:
    """Sends from an async view without awaiting anything (runs off the loop)."""
    experience = get_experience(request)
    experience.track("Opened app")
    experience.identify("crm-5", {"firstname": "Zed"})
    return JsonResponse({"name": experience.merge_tag("traits.firstname", "friend")})
