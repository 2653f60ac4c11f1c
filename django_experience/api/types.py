"""Typed results of the Experience API.

The API answers with JSON; these frozen dataclasses are what the client returns. Each keeps the
original JSON in ``raw`` so nothing the API adds later is lost (for example to hand the whole
profile to a browser SDK). Parsing is tolerant of missing optional fields and strict about the
shape of required ones: a wrong shape raises ``ValueError``, which the client reports as a
``TransportError`` (the body is not the documented JSON).

``from_json`` copies the objects it keeps, so the caller may change its data afterwards. The
client passes ``owned=True`` for JSON it has just decoded and holds alone: those objects are
kept as they are (``raw`` then shares them), since a profile answer is parsed on every
personalized request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

JSON = Any
JSONObject = dict[str, Any]
_T = TypeVar("_T")


def _new(cls: type[_T], **fields: Any) -> _T:
    """``cls(**fields)`` for fields already checked, all of them given in field order: what the
    frozen dataclass's ``__init__`` makes, without its ``object.__setattr__`` per field (half
    of building a result, parsed on every personalized request). A subclass, which may have an
    ``__init__`` or ``__post_init__`` of its own, is built by its ``__init__``."""
    if cls not in _PLAIN:
        return cls(**fields)
    obj = object.__new__(cls)
    obj.__dict__.update(fields)
    return obj


# Each helper takes where the value sits as a base and a suffix, joined only for the error
# message: a profile answer is parsed on every personalized request, and formatting a path
# for every field costs more than checking it.


def _at(where: str, suffix: str) -> str:
    return f"{where}{suffix}"


def _object(value: object, where: str, suffix: str = "") -> Mapping[str, Any]:
    if type(value) is dict:  # what decoded JSON holds; the ABC check below is far slower
        return value
    if not isinstance(value, Mapping):
        raise ValueError(f"{_at(where, suffix)} must be an object, got {type(value).__name__}")
    return value


def _optional_object(
    value: object, where: str, suffix: str = "", owned: bool = False
) -> dict[str, Any]:
    if value is None:
        return {}
    if type(value) is dict:
        return value if owned else value.copy()
    return dict(_object(value, where, suffix))


def _raw(obj: Mapping[str, Any], owned: bool) -> dict[str, Any]:
    return obj if owned and isinstance(obj, dict) else dict(obj)


def _string(value: object, where: str, suffix: str = "") -> str:
    if not isinstance(value, str):
        raise ValueError(f"{_at(where, suffix)} must be a string, got {type(value).__name__}")
    return value


def _int(value: object, where: str, suffix: str = "", default: int = 0) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_at(where, suffix)} must be a number, got {type(value).__name__}")
    try:
        return int(value)
    except (OverflowError, ValueError):  # an infinity or NaN of a document not decoded by us
        raise ValueError(f"{_at(where, suffix)} must be a finite number, got {value}") from None


def _number(value: object, where: str, suffix: str = "", default: float = 0.0) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{_at(where, suffix)} must be a number, got {type(value).__name__}")
    return float(value)


def _list(value: object, where: str, suffix: str = "") -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{_at(where, suffix)} must be a list, got {type(value).__name__}")
    return value


def _strings(values: list[Any], where: str, suffix: str) -> tuple[str, ...]:
    for value in values:
        _string(value, where, suffix)
    return tuple(values)


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
    def from_json(
        cls, data: object, where: str = "profile.session", *, owned: bool = False
    ) -> Session:
        obj = _object(data, where)
        session_id = obj.get("id")
        return _new(
            cls,
            id=None if session_id is None else _string(session_id, where, ".id"),
            is_returning_visitor=bool(obj.get("isReturningVisitor", False)),
            landing_page=_optional_object(obj.get("landingPage"), where, ".landingPage", owned),
            count=_int(obj.get("count"), where, ".count"),
            active_session_length=_number(
                obj.get("activeSessionLength"), where, ".activeSessionLength"
            ),
            average_session_length=_number(
                obj.get("averageSessionLength"), where, ".averageSessionLength"
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
    def from_json(cls, data: object, where: str = "profile", *, owned: bool = False) -> Profile:
        obj = _object(data, where)
        profile_id = _string(obj.get("id"), where, ".id")
        stable_id = obj.get("stableId")
        session = obj.get("session")
        sticky = obj.get("stickyVariants")
        return _new(
            cls,
            id=profile_id,
            stable_id=profile_id if stable_id is None else _string(stable_id, where, ".stableId"),
            random=_number(obj.get("random"), where, ".random"),
            audiences=_strings(
                _list(obj.get("audiences"), where, ".audiences"), where, ".audiences[]"
            ),
            traits=_optional_object(obj.get("traits"), where, ".traits", owned),
            location=_optional_object(obj.get("location"), where, ".location", owned),
            session=None
            if session is None
            else Session.from_json(session, f"{where}.session", owned=owned),
            sticky_variants={}
            if not sticky
            else {
                str(k): _int(v, where, ".stickyVariants")
                for k, v in _object(sticky, where, ".stickyVariants").items()
            },
            raw=_raw(obj, owned),
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
    def from_json(
        cls, data: object, where: str = "experiences[]", *, owned: bool = False
    ) -> Experience:
        obj = _object(data, where)
        variants = _optional_object(obj.get("variants"), where, ".variants", owned)
        for key, value in variants.items():
            if not isinstance(key, str) or not isinstance(value, str):
                variants = {
                    str(k): _string(v, where, f".variants.{k}") for k, v in variants.items()
                }
                break
        return _new(
            cls,
            experience_id=_string(obj.get("experienceId"), where, ".experienceId"),
            variant_index=_int(obj.get("variantIndex"), where, ".variantIndex"),
            variants=variants,
            sticky=bool(obj.get("sticky", False)),
            raw=_raw(obj, owned),
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
    def from_json(cls, data: object, where: str = "changes[]", *, owned: bool = False) -> Change:
        obj = _object(data, where)
        return _new(
            cls,
            key=_string(obj.get("key"), where, ".key"),
            type=_string(obj.get("type", "Variable"), where, ".type"),
            value=obj.get("value"),
            meta=_optional_object(obj.get("meta"), where, ".meta", owned),
            raw=_raw(obj, owned),
        )


@dataclass(frozen=True)
class ProfileResult:
    """What the single-profile endpoints answer: the profile with its selected variants."""

    profile: Profile
    experiences: tuple[Experience, ...]
    changes: tuple[Change, ...]

    @classmethod
    def from_json(cls, data: object, *, owned: bool = False) -> ProfileResult:
        obj = _object(data, "data")
        return _new(
            cls,
            profile=Profile.from_json(obj.get("profile"), "data.profile", owned=owned),
            experiences=tuple(
                Experience.from_json(e, f"data.experiences[{i}]", owned=owned)
                for i, e in enumerate(_list(obj.get("experiences"), "data.experiences"))
            ),
            changes=tuple(
                Change.from_json(c, f"data.changes[{i}]", owned=owned)
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


# The classes of this module, whose __init__ only stores the fields (see _new).
_PLAIN: frozenset[type] = frozenset({Session, Profile, Experience, Change, ProfileResult})

__all__ = ["Change", "Experience", "Profile", "ProfileResult", "Session"]
