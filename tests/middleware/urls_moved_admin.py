"""A site whose admin is not at /admin/ (and a second admin site of its own)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin import AdminSite
from django.urls import include, path

staff_site = AdminSite(name="staff")

urlpatterns = [
    path("backoffice/", admin.site.urls),
    path("staff-area/", staff_site.urls),
    path("mw/", include("tests.middleware.urls")),
]
