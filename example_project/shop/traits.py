"""Traits sent to the Experience API when a user signs in (``EXPERIENCE_USER_TRAITS``)."""

from __future__ import annotations

from typing import Any

GOLD_GROUP = "Gold members"


def user_traits(user: Any) -> dict[str, Any]:
    """What the personalization knows about a signed-in customer.

    ``firstname`` feeds the "Hi <first name>" merge tag; ``tier`` decides the gold audience.
    """
    is_gold = user.groups.filter(name=GOLD_GROUP).exists()
    return {
        "firstname": user.first_name,
        "lastname": user.last_name,
        "email": user.email,
        "tier": "gold" if is_gold else "standard",
        "memberSince": user.date_joined.date().isoformat(),
    }
