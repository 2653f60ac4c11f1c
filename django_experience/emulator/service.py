"""The six Experience API operations over the store, as plain functions of validated input."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field, replace
from typing import Any

from django_experience.emulator.config import EmulatorConfig
from django_experience.emulator.errors import namespace_mismatch, profile_not_found
from django_experience.emulator.profiles import StoredProfile
from django_experience.emulator.selection import evaluate_audiences, select
from django_experience.emulator.store import LockSet, ProfileStore


@dataclass
class Namespace:
    organization: str
    environment: str


@dataclass
class Transaction:
    """The profiles one request reads and changes; committed at the end unless preflight.

    Every lock the request needs (its profiles, the user ids it identifies, and the profiles
    those user ids already belong to) is taken before the first event is applied, so a request
    that cannot get them within the wait answers 429 without having changed anything.
    """

    store: ProfileStore
    config: EmulatorConfig
    namespace: Namespace
    preflight: bool
    locks: LockSet
    working: dict[str, StoredProfile] = field(default_factory=dict)
    redirect: dict[str, str] = field(default_factory=dict)
    merged: list[str] = field(default_factory=list)
    users: dict[tuple[str, str, str], str] = field(default_factory=dict)
    events_added: int = 0

    # -- preparation (all checks and locks) ---------------------------------------------

    def prepare(self, profile_ids: list[str], events: list[dict[str, Any]], *,
                create: bool, revive: bool = False) -> None:
        """Load ``profile_ids`` (``create``: unknown ones are new; ``revive``: deleted ones too)
        and the profiles that already own the user ids ``events`` identify."""
        for profile_id in profile_ids:
            self._load(profile_id, create=create, revive=revive)
        user_ids = sorted({
            e["userId"] for e in events if e.get("type") == "identify" and e.get("userId")
        })
        for user_id in user_ids:
            ns = self.namespace
            self.locks.acquire(f"user\0{ns.organization}\0{ns.environment}\0{user_id}")
            owner = self.store.owner_of(ns.organization, ns.environment, user_id)
            if owner and owner not in self.working and self.store.get(owner) is not None:
                self._load(owner, create=False)

    def _load(self, profile_id: str, *, create: bool, revive: bool = False) -> StoredProfile:
        if profile_id in self.working:
            return self.working[profile_id]
        self.locks.acquire(f"profile\0{profile_id}", profile_id)
        if self._gone(profile_id, revive=revive):
            raise profile_not_found(profile_id)
        existing = self.store.get(profile_id)
        ns = self.namespace
        if existing is None:
            if not create:
                raise profile_not_found(profile_id)
            profile = StoredProfile.new(profile_id, ns.organization, ns.environment)
        elif (existing.organization, existing.environment) != (ns.organization, ns.environment):
            raise namespace_mismatch(profile_id)
        else:
            profile = existing.clone() if self.preflight else existing
        self.working[profile_id] = profile
        return profile

    def _gone(self, profile_id: str, *, revive: bool) -> bool:
        """Whether the request must answer 404 for ``profile_id``: merged away (an alias), or
        deleted unless the request may ``revive`` it."""
        return profile_id in self.store.merged or (
            profile_id in self.store.deleted and not revive
        )

    # -- applying events ----------------------------------------------------------------

    def current(self, profile_id: str) -> StoredProfile:
        while profile_id in self.redirect:
            profile_id = self.redirect[profile_id]
        return self.working[profile_id]

    def apply(self, profile_id: str, event: dict[str, Any]) -> None:
        profile = self.current(profile_id)
        user_id = event.get("userId") if event.get("type") == "identify" else None
        if isinstance(user_id, str) and user_id:
            ns = self.namespace
            key = (ns.organization, ns.environment, user_id)
            owner = self.users.get(key) or self.store.owner_of(*key)
            if owner and owner != profile.id and owner in self.working:
                survivor = self.working[owner]
                if profile.apply(event):
                    self.events_added += 1
                self._merge(profile, survivor)
                survivor.user_id = user_id
                return
            self.users[key] = profile.id
            profile.user_id = user_id
        if profile.apply(event):
            self.events_added += 1

    def _merge(self, visitor: StoredProfile, survivor: StoredProfile) -> None:
        survivor.absorb(visitor)
        del self.working[visitor.id]
        self.redirect[visitor.id] = survivor.id
        self.merged.append(visitor.id)
        for key, owner in list(self.users.items()):
            if owner == visitor.id:
                self.users[key] = survivor.id

    # -- results ------------------------------------------------------------------------

    def finish(self, options: dict[str, Any] | None = None,
               location_for: str | None = None) -> None:
        if options and isinstance(options.get("location"), dict) and location_for is not None:
            self.current(location_for).location = dict(options["location"])
        for profile in self.working.values():
            profile.audiences = evaluate_audiences(self.config, profile)

    def result(self, profile_id: str) -> dict[str, Any]:
        """The single-profile answer."""
        return answer(self.config, self.current(profile_id))

    def commit(self) -> None:
        if self.preflight:
            return
        self.store.commit(list(self.working.values()), self.merged, self.users,
                          self.events_added)


def answer(config: EmulatorConfig, profile: StoredProfile) -> dict[str, Any]:
    """``profile`` with its experiences and changes."""
    experiences, changes = select(config, profile)
    return {"profile": profile.to_api_json(), "experiences": experiences, "changes": changes}


def create_profile(tx: Transaction, events: list[dict[str, Any]],
                   options: dict[str, Any]) -> dict[str, Any]:
    profile_id = str(uuid.uuid4())
    return _mutate(tx, profile_id, events, options)


def update_profile(tx: Transaction, profile_id: str, events: list[dict[str, Any]],
                   options: dict[str, Any]) -> dict[str, Any]:
    return _mutate(tx, profile_id, events, options)


def _mutate(tx: Transaction, profile_id: str, events: list[dict[str, Any]],
            options: dict[str, Any]) -> dict[str, Any]:
    tx.prepare([profile_id], events, create=True)
    for event in events:
        tx.apply(profile_id, event)
    tx.finish(options, profile_id)
    result = tx.result(profile_id)
    tx.commit()
    return result


def get_profile(tx: Transaction, profile_id: str) -> dict[str, Any]:
    # A GET persists nothing, not even the audiences it evaluates (set on a shallow copy, for
    # the answer only).
    tx.prepare([profile_id], [], create=False)
    stored = tx.current(profile_id)
    evaluated = replace(stored, audiences=evaluate_audiences(tx.config, stored))
    return answer(tx.config, evaluated)


def delete_profile(tx: Transaction, profile_id: str) -> None:
    tx.prepare([profile_id], [], create=False)
    tx.store.delete(profile_id)


def upsert_profiles(tx: Transaction, anonymous_ids: list[str],
                    events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # "when events are passed for profile IDs that do not yet exist, profiles at those IDs will
    # be created" (the document): a deleted id no longer exists, so it is created anew.
    tx.prepare(anonymous_ids, events, create=True, revive=True)
    for event in events:
        tx.apply(event["anonymousId"], event)
    tx.finish()
    # "Returns one profile per unique anonymousId in the batch" (the document): an anonymous id
    # merged into another profile answers that profile, which so appears once for each.
    profiles = [tx.current(anonymous_id).to_api_json() for anonymous_id in anonymous_ids]
    tx.commit()
    return profiles
