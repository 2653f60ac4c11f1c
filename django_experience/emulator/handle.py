"""A test's view of a running emulator: inspect what it stored, configure it, break it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from django_experience.emulator.faults import Faults
from django_experience.emulator.server import EmulatorServer
from django_experience.emulator.state import EmulatorState

if TYPE_CHECKING:
    from django_experience.api import ExperienceClient


class StatusCounts(dict[str, int]):
    """Counts by HTTP status; ``counts[200]`` and ``counts["200"]`` are the same, and a status
    never answered counts 0 (like ``collections.Counter``)."""

    def __missing__(self, key: str) -> int:
        return 0

    def __getitem__(self, key: object) -> int:
        return super().__getitem__(str(key))

    def get(self, key: object, default: Any = None) -> Any:
        return super().get(str(key), default)

    def __contains__(self, key: object) -> bool:
        return super().__contains__(str(key))


class RequestCounts(dict[str, StatusCounts]):
    """Counts by endpoint; an endpoint without requests reads as empty counts."""

    def __missing__(self, key: str) -> StatusCounts:
        return StatusCounts()


class EmulatorHandle:
    """What the ``experience_emulator`` fixture returns (usable without pytest too)."""

    def __init__(self, server: EmulatorServer, organization_id: str,
                 environment: str = "main") -> None:
        self.server = server
        self.organization_id = organization_id
        self.environment = environment

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def state(self) -> EmulatorState:
        return self.server.state

    def reset(self) -> None:
        """Forget profiles, statistics and faults; restore the start-up configuration."""
        self.server.state.reset()

    def configure(self, config: Mapping[str, Any]) -> None:
        """Replace experiences and audiences (the config file's shape)."""
        self.server.state.configure(config)

    def faults(
        self,
        latency_ms: float = 0,
        error_rate: float = 0.0,
        error_status: int = 500,
        overload_rate: float = 0.0,
        drop_rate: float = 0.0,
        malformed_rate: float = 0.0,
        slow_body_ms: float = 0,
        *,
        retry_after: float | None = None,
        seed: int | None = None,
    ) -> None:
        """Inject faults into every Experience API answer until ``clear_faults()``."""
        self.server.state.set_faults(Faults.from_json({
            "latency_ms": latency_ms, "error_rate": error_rate, "error_status": error_status,
            "overload_rate": overload_rate, "drop_rate": drop_rate,
            "malformed_rate": malformed_rate, "slow_body_ms": slow_body_ms,
            "retry_after": retry_after, "seed": seed,
        }))

    def clear_faults(self) -> None:
        self.server.state.set_faults(Faults())

    def stats(self) -> dict[str, Any]:
        """``{"requests": {endpoint: {status: count}}, "events": events stored}``."""
        data = self.server.state.stats_json()
        data["requests"] = RequestCounts(
            {k: StatusCounts(v) for k, v in data["requests"].items()})
        return data

    def request_count(self, endpoint: str | None = None) -> int:
        """Requests answered (or dropped) by one endpoint, or by all of them."""
        requests = self.server.state.stats.requests()
        endpoints = [endpoint] if endpoint is not None else list(requests)
        return sum(sum(requests.get(e, {}).values()) for e in endpoints)

    def received_count(self, endpoint: str | None = None) -> int:
        """Requests received by one endpoint, or by all, whether answered yet or not: a test can
        wait for a request to be in flight while a ``latency_ms`` fault holds it."""
        return self.server.state.stats.received(endpoint)

    def profiles(self) -> list[dict[str, Any]]:
        """Every stored profile, with its received ``events``."""
        return self.server.state.profiles_json()

    def profile(self, profile_id: str) -> dict[str, Any] | None:
        return self.server.state.profile_json(profile_id)

    def destinations(self) -> dict[str, Any]:
        """What the mounted destination emulators (Experiture, Releva) stored."""
        return self.server.state.destinations_json()

    def restrict(self, organization: str | None, environments: list[str] | None = None) -> None:
        """Only this organization/these environments exist (until ``reset()``)."""
        self.server.state.restrict(organization, environments)

    def stop(self) -> None:
        """Simulate an outage: the port refuses connections until ``start()``."""
        self.server.stop()

    def start(self) -> None:
        self.server.start()

    def client(self, **kwargs: Any) -> ExperienceClient:
        """An ``ExperienceClient`` for this emulator and the configured organization."""
        from django_experience.api import ExperienceClient

        options: dict[str, Any] = {"environment": self.environment, "base_url": self.url}
        options.update(kwargs)
        return ExperienceClient(self.organization_id, **options)
