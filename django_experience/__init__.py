"""Contentful Personalization (the Ninetailed Experience API) for server-rendered Django sites."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from django_experience.delivery import send as send


def __getattr__(name: str) -> Any:
    # Imported lazily: ``django_experience.api`` and the pytest plugin must not load Django.
    if name == "send":
        from django_experience.delivery import send

        return send
    raise AttributeError(f"module 'django_experience' has no attribute {name!r}")


__all__ = ["__version__", "send"]
