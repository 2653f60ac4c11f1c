"""Everything one emulator holds: profiles, configuration, faults, statistics, import queue."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from django_experience.emulator import service
from django_experience.emulator.config import EmulatorConfig, load_config
from django_experience.emulator.errors import APIError
from django_experience.emulator.faults import FaultDice, Faults
from django_experience.emulator.stats import Stats
from django_experience.emulator.store import ProfileStore
from django_experience.emulator.validation import (
    events_of,
    parse_body,
    validate_batch,
)

logger = logging.getLogger("django_experience.emulator")

DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_OVERLOAD_WAIT = 0.25
IMPORT_LOCK_WAIT = 5.0

ConfigInput = EmulatorConfig | Mapping[str, Any] | str | Path | None


class EmulatorState:
    """The emulator's in-memory world. Thread-safe; shared by every request of one server.

    ``organization``/``environments`` restrict which namespaces exist (others answer
    ``404 ERR_CONFIG_NOT_FOUND``); with no organization every namespace exists.
    """

    def __init__(
        self,
        config: ConfigInput = None,
        *,
        organization: str | None = None,
        environments: Iterable[str] | None = None,
        overload_wait: float = DEFAULT_OVERLOAD_WAIT,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        self.initial_config = load_config(config)
        self.config = self.initial_config
        self.initial_restriction = _restriction(organization, environments)
        self.restriction = self.initial_restriction
        self.overload_wait = overload_wait
        self.max_body_bytes = max_body_bytes
        self.store = ProfileStore()
        self.stats = Stats()
        self.faults = Faults()
        self.dice = FaultDice()
        self.mount_hooks: list[Callable[[], Any]] = []
        self.mount_snapshots: dict[str, Callable[[], Any]] = {}
        self._imports: queue.Queue[tuple[str, str, bytes]] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        # Bumped by reset(): a request that arrived before a reset (say, one still sleeping in
        # an injected latency) is dropped rather than written into the fresh state.
        self.generation = 0

    # -- configuration --------------------------------------------------------------------

    def configure(self, config: ConfigInput) -> None:
        """Replace experiences and audiences (raises ``ConfigError`` naming a bad field)."""
        self.config = load_config(config)

    def restrict(self, organization: str | None, environments: Iterable[str] | None = None) -> None:
        self.restriction = _restriction(organization, environments)

    def allows(self, organization: str, environment: str) -> bool:
        if self.restriction is None:
            return True
        allowed_org, allowed_envs = self.restriction
        return organization == allowed_org and environment in allowed_envs

    def set_faults(self, faults: Faults) -> None:
        self.faults = faults
        self.dice = FaultDice(faults.seed)

    def reset(self) -> None:
        """Forget all profiles, statistics and faults; restore the start-up configuration."""
        self.generation += 1
        self.drain()
        self.store.clear()
        self.stats.clear()
        self.set_faults(Faults())
        self.config = self.initial_config
        self.restriction = self.initial_restriction
        for hook in self.mount_hooks:
            try:
                hook()
            except Exception:  # a mounted emulator must not break ours
                logger.exception("reset of a mounted emulator failed")

    # -- operations -----------------------------------------------------------------------

    def transaction(self, organization: str, environment: str, *, preflight: bool = False,
                    locks: Any) -> service.Transaction:
        return service.Transaction(
            store=self.store,
            config=self.config,
            namespace=service.Namespace(organization, environment),
            preflight=preflight,
            locks=locks,
        )

    def enqueue_import(self, organization: str, environment: str, body: bytes) -> None:
        self._ensure_worker()
        self._imports.put((organization, environment, body))

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until every accepted import has been processed (True when done in time)."""
        deadline = time.monotonic() + timeout
        pending = self._imports
        with pending.all_tasks_done:
            while pending.unfinished_tasks:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                pending.all_tasks_done.wait(remaining)
        return True

    def _ensure_worker(self) -> None:
        with self._worker_lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._process_imports, name="experience-emulator-import", daemon=True
                )
                self._worker.start()

    def _process_imports(self) -> None:
        while True:
            organization, environment, body = self._imports.get()
            try:
                self.process_import(organization, environment, body)
            except APIError as exc:
                logger.warning("import for %s/%s rejected: %s %s", organization, environment,
                               exc.code, exc.message)
            except Exception:
                logger.exception("import for %s/%s failed", organization, environment)
            finally:
                self._imports.task_done()

    def process_import(self, organization: str, environment: str, body: bytes) -> None:
        if not self.allows(organization, environment):
            raise APIError(404, "ERR_CONFIG_NOT_FOUND",
                           f"Organization '{organization}' / '{environment}' not found")
        events = events_of(parse_body(body))
        anonymous_ids = validate_batch(events)
        with self.store.locked(IMPORT_LOCK_WAIT) as locks:
            tx = self.transaction(organization, environment, locks=locks)
            service.upsert_profiles(tx, anonymous_ids, events)

    # -- views ----------------------------------------------------------------------------

    def profiles_json(self) -> list[dict[str, Any]]:
        self.drain()
        return [self._control_json(p.id) for p in self.store.snapshot()
                if self.store.get(p.id) is not None]

    def profile_json(self, profile_id: str) -> dict[str, Any] | None:
        self.drain()
        if self.store.get(profile_id) is None:
            return None
        return self._control_json(profile_id)

    def _control_json(self, profile_id: str) -> dict[str, Any]:
        lock = self.store.lock_for(f"profile\0{profile_id}")
        acquired = lock.acquire(timeout=2.0)
        try:
            profile = self.store.get(profile_id)
            return profile.to_control_json() if profile is not None else {"id": profile_id}
        finally:
            if acquired:
                lock.release()

    def stats_json(self) -> dict[str, Any]:
        self.drain()
        return {"requests": self.stats.requests(), "events": self.store.events_stored}

    def destinations_json(self) -> dict[str, Any]:
        """What each mounted emulator (Experiture, Releva, ...) stored."""
        snapshots: dict[str, Any] = {}
        for name, snapshot in self.mount_snapshots.items():
            try:
                snapshots[name] = snapshot()
            except Exception:  # a mounted emulator must not break ours
                logger.exception("snapshot of mounted emulator %s failed", name)
                snapshots[name] = None
        return snapshots

    def config_json(self) -> dict[str, Any]:
        return dict(self.config.raw)


def _restriction(
    organization: str | None, environments: Iterable[str] | None
) -> tuple[str, frozenset[str]] | None:
    if not organization:
        return None
    envs = frozenset(environments or ("main",))
    return organization, envs
