"""Views of the benchmark site: a personalized page and a plain one."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


def page(request: HttpRequest) -> HttpResponse:
    """A personalized page with several tags."""
    return render(request, "bench/page.html", {"title": "Spring sale"})


def plain(request: HttpRequest) -> HttpResponse:
    """A page that never looks at personalization."""
    return HttpResponse("plain")
