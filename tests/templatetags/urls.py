from __future__ import annotations

from django.urls import path

from tests.templatetags import views

urlpatterns = [
    path("identify/<slug:name>/", views.identify_and_render),
    path("source/<slug:name>/", views.render_source),
    path("<slug:name>/", views.render_page),
]
