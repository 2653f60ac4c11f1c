"""A site whose admin is under i18n_patterns (/en/admin/, /de/admin/)."""

from __future__ import annotations

from django.conf.urls.i18n import i18n_patterns
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    *i18n_patterns(path("admin/", admin.site.urls)),
    path("mw/", include("tests.middleware.urls")),
]
