"""Views of the benchmark site: a personalized page and a plain one."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

#: Set by the middleware benchmark: one bare round trip of the API request to the stub.
round_trip: Callable[[], object] | None = None


def page(request: HttpRequest) -> HttpResponse:
    """A personalized page with several tags."""
    return render(request, "bench/page.html", {"title": "Spring sale"})


def plain(request: HttpRequest) -> HttpResponse:
    """A page that never looks at personalization."""
    return HttpResponse("plain")


def page_with_round_trip(request: HttpRequest) -> HttpResponse:
    """The personalized page's template plus one bare round trip to the stub, made inside the
    request like the middleware's call: the round trip measured in the same conditions (caches
    cooled by Django's own work, the stub idle since the last request)."""
    if round_trip is not None:
        round_trip()
    return render(request, "bench/page.html", {"title": "Spring sale"})
