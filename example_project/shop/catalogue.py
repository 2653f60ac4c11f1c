"""The shop's products: a fixed list, so the demo needs no fixtures."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class Product:
    slug: str
    name: str
    price: Decimal
    blurb: str
    swatch: str  # a CSS class giving the product card its colour


PRODUCTS: tuple[Product, ...] = (
    Product(
        "trail-jacket",
        "Trail Shell Jacket",
        Decimal("149.00"),
        "Waterproof, breathable, packs into its own pocket.",
        "swatch-moss",
    ),
    Product(
        "merino-tee",
        "Merino Tee",
        Decimal("59.00"),
        "Soft on the skin, fresh after three days on the trail.",
        "swatch-sand",
    ),
    Product(
        "day-pack",
        "Ridge Day Pack 22 L",
        Decimal("89.00"),
        "Light frame, hip belt, room for lunch and a spare layer.",
        "swatch-slate",
    ),
    Product(
        "camp-mug",
        "Enamel Camp Mug",
        Decimal("18.00"),
        "Coffee at the summit tastes better from enamel.",
        "swatch-rust",
    ),
)


def find_product(slug: str) -> Product | None:
    return next((product for product in PRODUCTS if product.slug == slug), None)
