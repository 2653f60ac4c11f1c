from __future__ import annotations

from django.contrib import admin
from django.urls import path

from tests.reliability import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("page/", views.page),
    path("plain/", views.plain),
    path("track/", views.track),
    path("sign-in/", views.sign_in),
    path("sign-out/", views.sign_out),
]
