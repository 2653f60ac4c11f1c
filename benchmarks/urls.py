"""URLs of the benchmark site."""

from __future__ import annotations

from django.urls import path

from benchmarks import views

urlpatterns = [
    path("page/", views.page),
    path("page-with-round-trip/", views.page_with_round_trip),
    path("plain/", views.plain),
    path("static/app.css", views.plain),
]
