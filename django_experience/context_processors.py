"""Template context processor: ``experience`` in every template rendered with a request.

Add ``"django_experience.context_processors.experience"`` to the ``context_processors`` of the
template engine. Templates can then read ``{{ experience.profile.traits.firstname }}`` or
``{% if experience.degraded %}``. Nothing is asked of the API unless a template uses it.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from django_experience.personalization import get_experience


def experience(request: HttpRequest) -> dict[str, Any]:
    """``{"experience": request.experience}``, or the null experience without the middleware."""
    return {"experience": SimpleLazyObject(lambda: get_experience(request))}
