"""Views of the reliability suite: a page with every tag, a plain page, track, sign-in/out."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from django.contrib.auth import get_user_model, login, logout
from django.http import HttpRequest, HttpResponse
from django.template import RequestContext, Template
from django.views.decorators.csrf import csrf_exempt

from django_experience.personalization import get_experience

TEMPLATES = Path(__file__).resolve().parent / "templates"


@cache
def _template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text(encoding="utf-8"))


def page(request: HttpRequest) -> HttpResponse:
    """A personalized page: a variant, an inline variable, a merge tag, the JSON hand-off."""
    context = RequestContext(request, {"query": request.GET.get("q", "")})
    return HttpResponse(_template("page.html").render(context))


def plain(request: HttpRequest) -> HttpResponse:
    """A page that never looks at personalization."""
    return HttpResponse("plain")


@csrf_exempt
def track(request: HttpRequest) -> HttpResponse:
    get_experience(request).track("Added to cart", {"sku": request.POST.get("sku", "none")})
    return HttpResponse("tracked")


@csrf_exempt
def sign_in(request: HttpRequest) -> HttpResponse:
    user = get_user_model().objects.get(username=request.POST["username"])
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return HttpResponse("signed in")


@csrf_exempt
def sign_out(request: HttpRequest) -> HttpResponse:
    logout(request)
    return HttpResponse("signed out")


def user_traits(user: object) -> dict[str, object]:
    """``EXPERIENCE_USER_TRAITS`` of the suite (values tests look for in logs)."""
    return {
        "firstname": getattr(user, "first_name", ""),
        "email": getattr(user, "email", ""),
    }
