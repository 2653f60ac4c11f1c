"""Django's own caches and personalized pages: what the README's "Private responses" says.

``@cache_page`` and ``{% cache %}`` store what the view rendered before the middleware marks the
response private, so without more they serve one visitor's variant to everyone. These tests
pin both the problem and the two ways out the README gives, and the middleware's warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.cache import cache
from django.test import Client

from django_experience import middleware
from django_experience.emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def empty_cache(settings: Any) -> Iterator[None]:
    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    cache.clear()
    middleware._warned_views.clear()
    yield
    cache.clear()
    middleware._warned_views.clear()


def _gold_ada() -> Client:
    """A signed-in staff user: traits firstname=Ada, tier=gold (the gold call to action)."""
    User.objects.create_user("ada", password="pw", first_name="Ada", is_staff=True)
    ada = Client()
    ada.get("/mw/page/")
    ada.post("/mw/sign-in/", {"username": "ada"})
    return ada


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "django_experience" and r.levelno >= logging.WARNING
    ]


def test_cache_page_alone_serves_one_visitors_variant_to_everyone(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    ada = _gold_ada()
    first = ada.get("/mw/cache-page-unsafe/")
    assert first.json()["name"] == "Ada"
    assert "private" in first["Cache-Control"]  # too late: the view's cache has it already
    stranger = Client().get("/mw/cache-page-unsafe/")
    assert stranger.json()["name"] == "Ada" and stranger.json()["cta"] == "gold"  # the leak
    # The middleware noticed, once for the view (not once per request).
    Client().get("/mw/cache-page-unsafe/")
    (line,) = _warnings(caplog)
    assert "cache_page" in line and "vary_on_cookie" in line
    assert "Ada" not in line and "gold" not in line


def test_cache_page_with_vary_on_cookie_caches_per_visitor(
    emulator: EmulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    ada = _gold_ada()
    assert ada.get("/mw/cache-page-per-visitor/").json()["name"] == "Ada"
    reads = emulator.request_count("update") + emulator.request_count("create")
    hit = ada.get("/mw/cache-page-per-visitor/")
    assert hit.json()["name"] == "Ada"
    assert emulator.request_count("update") + emulator.request_count("create") == reads
    assert "private" in hit["Cache-Control"] and "Cookie" in hit["Vary"]  # a hit is private too
    stranger = Client()
    stranger.get("/mw/page/")  # a visitor with a cookie of their own
    theirs = stranger.get("/mw/cache-page-per-visitor/").json()
    assert theirs["name"] == "friend" and theirs["cta"] == "blue"
    first_visit = Client().get("/mw/cache-page-per-visitor/").json()  # no cookie at all
    assert first_visit["name"] == "friend"
    assert _warnings(caplog) == []


def test_without_cache_control_outside_a_cache_hit_is_not_private(
    emulator: EmulatorHandle,
) -> None:
    # Why the recipe needs cache_control(private=True) outermost: on a hit the view does not
    # run, so the middleware cannot know the page is personalized.
    ada = _gold_ada()
    ada.get("/mw/cache-page-unsafe/")
    hit = ada.get("/mw/cache-page-unsafe/")
    assert "private" not in hit["Cache-Control"]


def test_template_fragments_cached_for_everyone_or_per_selected_value(
    emulator: EmulatorHandle,
) -> None:
    ada = _gold_ada()
    assert ada.get("/mw/cached-fragments/").content.decode().split() == ["name=Ada", "cta=gold"]
    stranger = Client().get("/mw/cached-fragments/").content.decode().split()
    # The fragment cached under one key for everyone leaks; the one keyed by the selected
    # value (a few variants, not one copy per visitor) is right for every visitor.
    assert stranger == ["name=Ada", "cta=blue"]


@pytest.mark.parametrize(
    ("given", "cache_control", "vary"),
    [
        ({}, "private", "Cookie"),
        (
            {"Cache-Control": "public, max-age=60", "Vary": "Accept-Encoding"},
            "max-age=60, private",
            "Accept-Encoding, Cookie",
        ),
        ({"Cache-Control": "no-store", "Vary": "Cookie"}, "no-store, private", "Cookie"),
    ],
)
def test_marked_private_keeps_what_the_view_said(
    given: dict[str, str], cache_control: str, vary: str
) -> None:
    from django.http import HttpResponse

    from django_experience.middleware import _mark_private

    response = HttpResponse(headers=given)
    _mark_private(response)
    assert response["Cache-Control"] == cache_control
    assert response["Vary"] == vary
