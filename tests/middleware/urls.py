from __future__ import annotations

from django.urls import path

from tests.middleware import views

urlpatterns = [
    path("page/", views.page),
    path("plain/", views.plain),
    path("prefetch-probe/", views.prefetch_probe),
    path("cached/", views.cached),
    path("cache-page-unsafe/", views.cache_page_unsafe),
    path("cache-page-per-visitor/", views.cache_page_per_visitor),
    path("cached-fragments/", views.cached_fragments),
    path("track/", views.track),
    path("identify/", views.identify),
    path("identify-on-get/", views.identify_on_get),
    path("read-then-identify/", views.read_then_identify),
    path("sign-in/", views.sign_in),
    path("magic-link/", views.sign_in_and_render),
    path("personalize-then-query/", views.personalize_then_query),
    path("sign-out/", views.sign_out),
    path("async/", views.async_page),
    path("async-sync-read/", views.async_sync_read),
    path("async-plain/", views.async_plain),
    path("async-sign-in/", views.async_sign_in),
    path("async-track-identify/", views.async_track_and_identify),
    path("excluded/page/", views.page),
]
