from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("tags/", include("tests.templatetags.urls")),
    path("mw/", include("tests.middleware.urls")),
]
