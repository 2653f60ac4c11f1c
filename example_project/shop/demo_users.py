"""The demo accounts: fixed, published passwords, for a local demo only."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    first_name: str
    last_name: str
    email: str
    gold: bool
    staff: bool

    @property
    def role(self) -> str:
        parts = ["gold member" if self.gold else "customer"]
        if self.staff:
            parts.append("admin")
        return ", ".join(parts)


DEMO_USERS: tuple[DemoUser, ...] = (
    DemoUser("ada", "trailhead-ada", "Ada", "Lovelace", "ada@example.com", gold=True, staff=True),
    DemoUser(
        "grace", "summit-grace", "Grace", "Hopper", "grace@example.com", gold=False, staff=False
    ),
)
