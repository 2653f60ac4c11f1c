"""Typed results of the Experience API.

The API answers with JSON; these frozen dataclasses are what the client returns. Each keeps the
original JSON in ``raw`` so nothing the API adds later is lost (for example to hand the whole
profile to a browser SDK). Parsing is tolerant of missing optional fields and strict about the
shape of required ones: a wrong shape raises ``ValueError``, which the client reports as a
``TransportError`` (the body is not the documented JSON).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

JSON = Any
JSONObject = dict[str, Any]


def _object(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{where} must be an object, got {type(value).__name__}")
    return value


def _optional_object(value: object, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    return dict(_object(value, where))


def _string(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where} must be a string, got {type(value).__name__}")
    return value


def _int(value: object, where: str, default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {type(value).__name__}")
    return int(value)


def _number(value: object, where: str, default: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{where} must be a number, got {type(value).__name__}")
    return float(value)


def _list(value: object, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{where} must be a list, got {type(value).__name__}")
    return value


@dataclass(frozen=True)
class Session:
    """The visitor's current session as the API tracks it."""

    id: str | None
    is_returning_visitor: bool
    landing_page: dict[str, Any]
    count: int
    active_session_length: float
    average_session_length: float

    @classmethod
    def from_json(cls, data: object, where: str = "profile.session") -> Session:
        obj = _object(data, where)
        session_id = obj.get("id")
        return cls(
            id=None if session_id is None else _string(session_id, f"{where}.id"),
            is_returning_visitor=bool(obj.get("isReturningVisitor", False)),
            landing_page=_optional_object(obj.get("landingPage"), f"{where}.landingPage"),
            count=_int(obj.get("count"), f"{where}.count"),
            active_session_length=_number(
                obj.get("activeSessionLength"), f"{where}.activeSessionLength"
            ),
            average_session_length=_number(
                obj.get("averageSessionLength"), f"{where}.averageSessionLength"
            ),
        )


@dataclass(frozen=True)
class Profile:
    """A visitor's profile: identity, audiences, traits, location and session."""

    id: str
    stable_id: str
    random: float
    audiences: tuple[str, ...]
    traits: dict[str, Any]
    location: dict[str, Any]
    session: Session | None
    sticky_variants: dict[str, int] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object, where: str = "profile") -> Profile:
        obj = _object(data, where)
        profile_id = _string(obj.get("id"), f"{where}.id")
        stable_id = obj.get("stableId")
        session = obj.get("session")
        sticky = _optional_object(obj.get("stickyVariants"), f"{where}.stickyVariants")
        return cls(
            id=profile_id,
            stable_id=profile_id if stable_id is None else _string(stable_id, f"{where}.stableId"),
            random=_number(obj.get("random"), f"{where}.random"),
            audiences=tuple(
                _string(a, f"{where}.audiences[]") for a in _list(obj.get("audiences"), where)
            ),
            traits=_optional_object(obj.get("traits"), f"{where}.traits"),
            location=_optional_object(obj.get("location"), f"{where}.location"),
            session=None if session is None else Session.from_json(session, f"{where}.session"),
            sticky_variants={str(k): _int(v, f"{where}.stickyVariants") for k, v in sticky.items()},
            raw=dict(obj),
        )


@dataclass(frozen=True)
class Experience:
    """One experience selected for a profile (``SelectedVariantInfo`` in the SDKs)."""

    experience_id: str
    variant_index: int
    variants: dict[str, str]
    sticky: bool = False
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: object, where: str = "experiences[]") -> Experience:
        obj = _object(data, where)
        variants = _optional_object(obj.get("variants"), f"{where}.variants")
        return cls(
            experience_id=_string(obj.get("experienceId"), f"{where}.experienceId"),
            variant_index=_int(obj.get("variantIndex"), f"{where}.variantIndex"),
            variants={
                str(k): _string(v, f"{where}.variants.{k}") for k, v in variants.items()
            },
            sticky=bool(obj.get("sticky", False)),
            raw=dict(obj),
        )


@dataclass(frozen=True)
class Change:
    """An inline variable change: for ``key``, use ``value``."""

    key: str
    type: str
    value: Any
    meta: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def experience_id(self) -> str | None:
        value = self.meta.get("experienceId")
        return value if isinstance(value, str) else None

    @property
    def variant_index(self) -> int | None:
        value = self.meta.get("variantIndex")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    @classmethod
    def from_json(cls, data: object, where: str = "changes[]") -> Change:
        obj = _object(data, where)
        return cls(
            key=_string(obj.get("key"), f"{where}.key"),
            type=_string(obj.get("type", "Variable"), f"{where}.type"),
            value=obj.get("value"),
            meta=_optional_object(obj.get("meta"), f"{where}.meta"),
            raw=dict(obj),
        )


@dataclass(frozen=True)
class ProfileResult:
    """What the single-profile endpoints answer: the profile with its selected variants."""

    profile: Profile
    experiences: tuple[Experience, ...]
    changes: tuple[Change, ...]

    @classmethod
    def from_json(cls, data: object) -> ProfileResult:
        obj = _object(data, "data")
        return cls(
            profile=Profile.from_json(obj.get("profile"), "data.profile"),
            experiences=tuple(
                Experience.from_json(e, f"data.experiences[{i}]")
                for i, e in enumerate(_list(obj.get("experiences"), "data.experiences"))
            ),
            changes=tuple(
                Change.from_json(c, f"data.changes[{i}]")
                for i, c in enumerate(_list(obj.get("changes"), "data.changes"))
            ),
        )

    def to_json(self) -> JSONObject:
        """The result in the API's own JSON shape (for a browser SDK to hydrate from)."""
        return {
            "profile": self.profile.raw,
            "experiences": [e.raw for e in self.experiences],
            "changes": [c.raw for c in self.changes],
        }


__all__ = ["Change", "Experience", "Profile", "ProfileResult", "Session"]
