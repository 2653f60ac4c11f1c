"""Thread-safe in-memory storage of profiles, with per-profile locks that time out."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django_experience.emulator.errors import profile_overload
from django_experience.emulator.profiles import StoredProfile


class LockSet:
    """Locks held by one request; acquiring a key twice is a no-op."""

    def __init__(self, store: ProfileStore, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self._held: dict[str, threading.Lock] = {}

    def acquire(self, key: str, profile_id: str | None = None) -> None:
        if key in self._held:
            return
        lock = self._store.lock_for(key)
        if not lock.acquire(timeout=self._timeout):
            raise profile_overload(profile_id or key)
        self._held[key] = lock

    def release_all(self) -> None:
        for lock in reversed(list(self._held.values())):
            lock.release()
        self._held.clear()


class ProfileStore:
    """Profiles by id, ids merged away or deleted, and which profile owns each user id."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self.profiles: dict[str, StoredProfile] = {}
        # Kept apart because they differ: a merged-away id is an alias, and aliases answer 404
        # (the document's FAQ), while a deleted id simply no longer exists, so the batch
        # endpoint, which upserts, creates it anew.
        self.merged: set[str] = set()
        self.deleted: set[str] = set()
        self.users: dict[tuple[str, str, str], str] = {}
        self.events_stored = 0

    def lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(key)
            if lock is None:
                lock = self._locks[key] = threading.Lock()
            return lock

    @contextmanager
    def locked(self, timeout: float) -> Iterator[LockSet]:
        locks = LockSet(self, timeout)
        try:
            yield locks
        finally:
            locks.release_all()

    def get(self, profile_id: str) -> StoredProfile | None:
        return self.profiles.get(profile_id)

    def owner_of(self, organization: str, environment: str, user_id: str) -> str | None:
        return self.users.get((organization, environment, user_id))

    def commit(
        self,
        profiles: list[StoredProfile],
        merged: list[str],
        users: dict[tuple[str, str, str], str],
        events_added: int,
    ) -> None:
        with self._guard:
            for profile in profiles:
                self.profiles[profile.id] = profile
                self.deleted.discard(profile.id)
            self.users.update(users)
            self._remove(merged, self.merged)
            self.events_stored += events_added

    def delete(self, profile_id: str) -> None:
        with self._guard:
            self._remove([profile_id], self.deleted)

    def _remove(self, profile_ids: list[str], gone: set[str]) -> None:
        """Drop ``profile_ids`` and the user ids they own, remembering them in ``gone``."""
        for profile_id in profile_ids:
            self.profiles.pop(profile_id, None)
            gone.add(profile_id)
        if profile_ids:
            dropped = set(profile_ids)
            for key in [k for k, v in self.users.items() if v in dropped]:
                del self.users[key]

    def snapshot(self) -> list[StoredProfile]:
        with self._guard:
            return sorted(self.profiles.values(), key=lambda p: p.created_at)

    def clear(self) -> None:
        with self._guard:
            self.profiles.clear()
            self.merged.clear()
            self.deleted.clear()
            self.users.clear()
            self._locks.clear()
            self.events_stored = 0


def now() -> float:
    return time.time()
