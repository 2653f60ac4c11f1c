"""A small in-memory experience object implementing the ``request.experience`` interface.

Used only for what the real middleware cannot be made to produce on purpose: an experience
object that raises from every method, and exact control over the selected variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django_experience.api.types import Change
from django_experience.personalization import SelectedVariant


@dataclass
class FakeExperience:
    selections: dict[str, SelectedVariant] = field(default_factory=dict)
    changes: tuple[Change, ...] = ()
    traits: dict[str, Any] = field(default_factory=dict)
    degraded: bool = False
    viewed: list[tuple[str, str, int, str]] = field(default_factory=list)

    def variant(self, baseline_id: str) -> SelectedVariant | None:
        return self.selections.get(baseline_id)

    def change(self, key: str, default: Any = None) -> Any:
        for change in self.changes:
            if change.key == key:
                return change.value
        return default

    def merge_tag(self, path: str, fallback: str = "") -> Any:
        value = self.traits.get(path.removeprefix("traits."))
        return value if value not in (None, "", 0, False) else fallback

    def component_viewed(
        self,
        component_id: str,
        *,
        experience_id: str,
        variant_index: int,
        component_type: str = "Entry",
    ) -> None:
        self.viewed.append((component_id, experience_id, variant_index, component_type))

    def to_json(self) -> dict[str, Any]:
        return {"profile": {"traits": self.traits}, "experiences": [], "changes": []}


class BrokenExperience:
    """Every attribute access fails, like an experience object with a bug in it."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"secret-trait-value broke on {name}")


def selected(
    baseline_id: str, entry_id: str, index: int, experience_id: str = "exp-1"
) -> SelectedVariant:
    return SelectedVariant(
        baseline_id=baseline_id,
        entry_id=entry_id,
        experience_id=experience_id,
        variant_index=index,
        sticky=False,
    )


def variable_change(key: str, value: Any, experience_id: str = "exp-1", index: int = 1) -> Change:
    meta = {"experienceId": experience_id, "variantIndex": index}
    raw = {"key": key, "type": "Variable", "value": value, "meta": meta}
    return Change(key=key, type="Variable", value=value, meta=meta, raw=raw)
