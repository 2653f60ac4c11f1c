"""Views of the demo shop: personalization happens in the templates, tracking in the views."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from shop.catalogue import PRODUCTS, find_product

CART_SESSION_KEY = "cart"


def _page_context(request: HttpRequest) -> dict[str, Any]:
    cart: list[str] = request.session.get(CART_SESSION_KEY, [])
    return {
        "products": PRODUCTS,
        "cart_count": len(cart),
        "hero_entry": settings.SHOP_HERO_ENTRY,
        "banner_entry": settings.SHOP_BANNER_ENTRY,
        "shipping_entry": settings.SHOP_SHIPPING_ENTRY,
        "cart_entry": settings.SHOP_CART_ENTRY,
    }


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/home.html", _page_context(request))


def catalogue(request: HttpRequest) -> HttpResponse:
    return render(request, "shop/catalogue.html", _page_context(request))


@require_POST
def add_to_cart(request: HttpRequest) -> HttpResponse:
    product = find_product(request.POST.get("product", ""))
    if product is None:
        raise Http404("No such product.")
    cart: list[str] = request.session.get(CART_SESSION_KEY, [])
    request.session[CART_SESSION_KEY] = [*cart, product.slug]
    # A server-side event: no browser SDK needed. It reaches the visitor's profile through
    # background delivery, so the "cart" audience picks it up on the next page.
    request.experience.track(  # type: ignore[attr-defined]
        "Add to cart",
        {
            "product": product.slug,
            "name": product.name,
            "price": float(product.price),
            "currency": "EUR",
        },
    )
    messages.success(request, f"{product.name} is in your cart.")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(next_url, allowed_hosts={request.get_host()}):
        next_url = reverse("home")
    return HttpResponseRedirect(next_url)
