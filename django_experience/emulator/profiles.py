"""A stored profile and how events change it (traits, location, session, history)."""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from django_experience.emulator.audiences import UTM_KEYS, ProfileFacts
from django_experience.emulator.murmur import sdk_random
from django_experience.emulator.validation import event_time_ms

SESSION_TIMEOUT_MS = 30 * 60 * 1000
CAMPAIGN_KEYS = {"name": "campaign", "source": "source", "medium": "medium", "term": "term",
                 "content": "content"}
PAGE_KEYS = ("path", "url", "referrer", "search")


def empty_page() -> dict[str, Any]:
    return {"path": "", "url": "", "query": {}, "referrer": "", "search": ""}


@dataclass
class SessionSpan:
    id: str
    start_ms: float
    end_ms: float
    landing_page: dict[str, Any]

    @property
    def length_ms(self) -> float:
        return self.end_ms - self.start_ms


@dataclass
class StoredProfile:
    """Everything the emulator keeps about one profile."""

    id: str
    organization: str
    environment: str
    stable_id: str = ""
    random: float = 0.0
    user_id: str | None = None
    traits: dict[str, Any] = field(default_factory=dict)
    # When each trait key was last set (the identify's timestamp, epoch ms): per key, the value
    # set last by that time wins, within the profile and across a merge.
    trait_times: dict[str, float] = field(default_factory=dict)
    location: dict[str, Any] = field(default_factory=dict)
    audiences: list[str] = field(default_factory=list)
    sticky_variants: dict[str, int] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    message_ids: set[str] = field(default_factory=set)
    sessions: list[SessionSpan] = field(default_factory=list)
    viewed_paths: set[str] = field(default_factory=set)
    utm: dict[str, set[str]] = field(default_factory=dict)
    tracked_events: set[str] = field(default_factory=set)
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)

    @classmethod
    def new(cls, profile_id: str, organization: str, environment: str) -> StoredProfile:
        return cls(
            id=profile_id,
            organization=organization,
            environment=environment,
            stable_id=profile_id,
            random=round(sdk_random(f"random-{profile_id}"), 6),
        )

    def clone(self) -> StoredProfile:
        return copy.deepcopy(self)

    # -- events ---------------------------------------------------------------------------

    def apply(self, event: Mapping[str, Any]) -> bool:
        """Record one validated event; False when its messageId was already recorded."""
        message_id = event.get("messageId")
        if isinstance(message_id, str) and message_id:
            if message_id in self.message_ids:
                return False
            self.message_ids.add(message_id)
        stored = dict(event)
        if stored.get("channel") == "client":
            stored["channel"] = "web"  # as the API documents it
        self.events.append(stored)
        self.updated_at = time.time()
        context: Mapping[str, Any] = event.get("context") or {}
        kind = event["type"]
        self._track_session(event, context)
        location = context.get("location")
        if isinstance(location, dict) and location:
            self.location = dict(location)
        campaign = context.get("campaign")
        if isinstance(campaign, dict):
            for key, utm_key in CAMPAIGN_KEYS.items():
                value = campaign.get(key)
                if isinstance(value, str) and value:
                    self.utm.setdefault(utm_key, set()).add(value)
        if kind == "page":
            page = page_of(event)
            if page["path"]:
                self.viewed_paths.add(page["path"])
            for key in UTM_KEYS:
                value = page["query"].get(f"utm_{key}")
                if value:
                    self.utm.setdefault(key, set()).add(value)
        elif kind == "track":
            self.tracked_events.add(event["event"])
        elif kind == "identify":
            traits = event.get("traits")
            if isinstance(traits, dict):
                self.set_traits(traits, _moment(event))
        elif kind == "component":
            experience_id = event.get("experienceId")
            variant_index = event.get("variantIndex")
            if isinstance(experience_id, str) and experience_id and isinstance(variant_index, int):
                self.sticky_variants[experience_id] = variant_index
        return True

    def set_traits(self, traits: Mapping[str, Any], moment: float) -> None:
        """Shallow-merge ``traits`` set at ``moment`` (epoch ms), each key by its time.

        The document says "the most recent value of a given trait key overwrites the prior
        value" but not by what it orders them; merges order by timestamp (``absorb``), so this
        does too: a late event older than a key's stored value leaves that key alone (on a tie,
        the event arriving last wins).
        """
        for key, value in traits.items():
            if moment >= self.trait_times.get(key, moment):
                self.traits[key] = value
                self.trait_times[key] = moment

    def _track_session(self, event: Mapping[str, Any], context: Mapping[str, Any]) -> None:
        moment = _moment(event)
        current = self.sessions[-1] if self.sessions else None
        if current is None or moment - current.end_ms > SESSION_TIMEOUT_MS:
            current = SessionSpan(str(uuid.uuid4()), moment, moment, empty_page())
            self.sessions.append(current)
        else:
            # Out-of-order events never shorten a session.
            current.end_ms = max(current.end_ms, moment)
        landing_missing = not current.landing_page["url"] and not current.landing_page["path"]
        describes_page = event.get("type") == "page" or isinstance(context.get("page"), dict)
        if landing_missing and describes_page:
            current.landing_page = page_of(event)

    def absorb(self, visitor: StoredProfile) -> None:
        """Merge an anonymous visitor's profile into this (already identified) one.

        Traits merge per key by when each was last set, so the later value wins whichever
        profile holds it, the traits of the identify that causes the merge included (a tie goes
        to the visitor, merged now), as within one profile (``set_traits``).
        """
        for key, value in visitor.traits.items():
            theirs = visitor.trait_times.get(key, float("-inf"))
            ours = self.trait_times.get(key)
            if ours is None or theirs >= ours:
                self.traits[key] = value
            self.trait_times[key] = max(theirs, ours if ours is not None else theirs)
        for event in visitor.events:
            self.events.append(event)
        self.message_ids |= visitor.message_ids
        for experience_id, index in visitor.sticky_variants.items():
            self.sticky_variants.setdefault(experience_id, index)
        if visitor.location and not self.location:
            self.location = dict(visitor.location)
        self.viewed_paths |= visitor.viewed_paths
        self.tracked_events |= visitor.tracked_events
        for key, values in visitor.utm.items():
            self.utm.setdefault(key, set()).update(values)
        if visitor.sessions:
            latest = visitor.sessions[-1]
            current = self.sessions[-1] if self.sessions else None
            if current is None or latest.start_ms - current.end_ms > SESSION_TIMEOUT_MS:
                self.sessions.append(copy.deepcopy(latest))
            else:
                current.end_ms = max(current.end_ms, latest.end_ms)
        self.updated_at = time.time()

    # -- views ----------------------------------------------------------------------------

    def facts(self) -> ProfileFacts:
        return ProfileFacts(
            traits=self.traits,
            viewed_paths=self.viewed_paths,
            utm=self.utm,
            tracked_events=self.tracked_events,
            returning_visitor=len(self.sessions) > 1,
            location=self.location,
        )

    def session_json(self) -> dict[str, Any]:
        if not self.sessions:
            return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, self.id)), "isReturningVisitor": False,
                    "landingPage": empty_page(), "count": 0, "activeSessionLength": 0,
                    "averageSessionLength": 0}
        current = self.sessions[-1]
        lengths = [s.length_ms for s in self.sessions]
        return {
            "id": current.id,
            "isReturningVisitor": len(self.sessions) > 1,
            "landingPage": copy.deepcopy(current.landing_page),
            "count": len(self.sessions),
            "activeSessionLength": round(current.length_ms),
            "averageSessionLength": round(sum(lengths) / len(lengths)),
        }

    def to_api_json(self) -> dict[str, Any]:
        """The profile as the API answers it."""
        data: dict[str, Any] = {
            "id": self.id,
            "stableId": self.stable_id,
            "random": self.random,
            "audiences": list(self.audiences),
            "traits": copy.deepcopy(self.traits),
            "location": copy.deepcopy(self.location),
            "session": self.session_json(),
        }
        if self.sticky_variants:
            data["stickyVariants"] = dict(self.sticky_variants)
        return data

    def to_control_json(self) -> dict[str, Any]:
        """Everything stored, for the control API: the API shape plus history and namespace."""
        data = self.to_api_json()
        data.update(
            organization=self.organization,
            environment=self.environment,
            userId=self.user_id,
            stickyVariants=dict(self.sticky_variants),
            events=copy.deepcopy(self.events),
            createdAt=self.created_at,
            updatedAt=self.updated_at,
        )
        return data


def _moment(event: Mapping[str, Any]) -> float:
    """The event's time in epoch ms: its ``timestamp``, or now when it has none."""
    moment = event_time_ms(event)
    return time.time() * 1000.0 if moment is None else moment


def _strings(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v if isinstance(v, str) else str(v) for k, v in value.items()}


def page_of(event: Mapping[str, Any]) -> dict[str, Any]:
    """The page an event describes, from ``properties`` (page events) or ``context.page``."""
    context = event.get("context") or {}
    sources = [context.get("page")]
    if event.get("type") == "page":
        sources.insert(0, event.get("properties"))
    page = empty_page()
    for source in sources:
        if not isinstance(source, dict):
            continue
        for key in PAGE_KEYS:
            value = source.get(key)
            if not page[key] and isinstance(value, str):
                page[key] = value
        if not page["query"]:
            page["query"] = _strings(source.get("query"))
    if page["url"] and (not page["path"] or not page["query"]):
        try:
            parts = urlsplit(page["url"])
        except ValueError:
            return page
        if not page["path"]:
            page["path"] = parts.path or "/"
        if not page["query"] and parts.query:
            page["query"] = dict(parse_qsl(parts.query))
        if not page["search"] and parts.query:
            page["search"] = f"?{parts.query}"
    return page
