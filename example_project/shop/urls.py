"""Pages of the demo shop."""

from __future__ import annotations

from django.urls import path

from shop import views

urlpatterns = [
    path("", views.home, name="home"),
    path("products/", views.catalogue, name="catalogue"),
    path("cart/add/", views.add_to_cart, name="add_to_cart"),
]
