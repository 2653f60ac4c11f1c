"""Views that render the tag test templates inside real requests."""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template import RequestContext, Template

from django_experience.personalization import get_experience

# Ids and values templates read from variables (the literal forms are in the templates).
PAGE_CONTEXT: dict[str, Any] = {
    "hero_id": "hero-default",
    "gold_id": "hero-gold",
    "banner_id": "banner-default",
    "first": 1,
    "second": 2,
    "cta_key": "ctaColor",
    "cta_default": "grey",
    "path": "traits.firstname",
    "fallback": "friend",
}


def render_page(request: HttpRequest, name: str) -> HttpResponse:
    """Render ``tags/<name>.html``."""
    return render(request, f"tags/{name}.html", PAGE_CONTEXT)


def identify_and_render(request: HttpRequest, name: str) -> HttpResponse:
    """Identify the visitor with the JSON ``traits`` of the query string, then render."""
    traits = json.loads(request.GET.get("traits", "{}"))
    get_experience(request).identify(request.GET.get("user", "visitor-1"), traits)
    return render(request, f"tags/{name}.html", PAGE_CONTEXT)


#: Template sources a test sets for ``/tags/source/<name>/`` (with ``{% load experience %}``).
SOURCES: dict[str, str] = {}


def render_source(request: HttpRequest, name: str) -> HttpResponse:
    """Render ``SOURCES[name]``, a template a test wrote for itself."""
    template = Template("{% load experience %}" + SOURCES[name])
    return HttpResponse(template.render(RequestContext(request, PAGE_CONTEXT)))
