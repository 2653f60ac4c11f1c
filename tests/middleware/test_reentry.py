"""Code that runs while the profile is resolved (a consent, traits or user id callable, a
``profile_identified`` receiver) and uses ``request.experience`` itself: that use is answered
degraded, once logged, instead of waiting forever for the lock its own thread holds."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.http import HttpRequest
from django.test import Client

from django_experience.api.events import ComponentView
from django_experience.api.types import ProfileResult
from django_experience.emulator.handle import EmulatorHandle
from django_experience.personalization import Personalization
from tests.middleware.test_personalization import RESULT_JSON


def _within(seconds: float, function: Callable[[], Any]) -> Any:
    """``function()`` in a thread, failing the test (not hanging it) should it block."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = function()
        except BaseException as exc:  # reported below
            out["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds} s: a deadlock"
    if "error" in out:
        raise out["error"]
    return out.get("value")


class ReenteringSource:
    """A source whose resolve calls ``during(experience)``, as user code it runs might."""

    def __init__(self, during: Callable[[Personalization], Any]) -> None:
        self.during = during
        self.experience: Personalization | None = None
        self.inner: Any = "not called"
        self.resolves = 0
        self.views: list[ComponentView] = []

    def resolve(self) -> ProfileResult | None:
        self.resolves += 1
        assert self.experience is not None
        self.inner = self.during(self.experience)
        return ProfileResult.from_json(RESULT_JSON)

    def identify(self, user_id: str, traits: dict[str, Any]) -> ProfileResult | None:
        return ProfileResult.from_json(RESULT_JSON)

    def send(self, event: dict[str, Any]) -> None:
        pass

    def view(self, component: ComponentView) -> None:
        self.views.append(component)

    def tracks_component_views(self) -> bool:
        return True

    def shares_profile(self) -> bool:
        return True


def _experience(during: Callable[[Personalization], Any]) -> tuple[Personalization, Any]:
    source = ReenteringSource(during)
    experience = Personalization(source)
    source.experience = experience
    return experience, source


def _everything(experience: Personalization) -> tuple[Any, ...]:
    """Each thing code called during resolution might do with ``request.experience``."""
    experience.identify("u1", {"a": 1})  # answers a result: adopted, were it not re-entry
    experience.forget()
    experience.component_viewed("hero", experience_id="exp-hero", variant_index=1)
    experience.track("Seen")
    return (
        experience.profile,
        experience.degraded,
        experience.variant("hero"),
        experience.change("ctaColor", "blue"),
        experience.merge_tag("traits.firstname", "friend"),
        experience.to_json(),
    )


NO_DATA: dict[str, Any] = {"profile": None, "experiences": [], "changes": []}
BASELINE: tuple[Any, ...] = (None, True, None, "blue", "friend", NO_DATA)


def test_use_during_resolution_is_answered_degraded_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    experience, source = _experience(_everything)
    with caplog.at_level(logging.WARNING, logger="django_experience"):
        profile = _within(5, lambda: experience.profile)
    assert source.inner == BASELINE
    # The outer read gets the resolved profile, resolved once.
    assert profile is not None and profile.id == "p-1" and source.resolves == 1
    assert experience.merge_tag("traits.firstname", "friend") == "Ada"
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "while the profile is being resolved" in warnings[0].getMessage()
    assert len(source.views) == 1  # a component view needs no profile: it still counts


def test_resolution_offloaded_from_an_event_loop_does_not_deadlock() -> None:
    # Inside a running loop the resolution runs in an offload thread: the re-entry comes
    # from that thread, not the one holding the lock.
    experience, source = _experience(lambda inner: inner.profile)

    async def read_in_a_loop() -> Any:
        return experience.profile

    profile = _within(5, lambda: asyncio.run(read_in_a_loop()))
    assert profile is not None and source.inner is None


def test_aload_with_a_reentering_source(caplog: pytest.LogCaptureFixture) -> None:
    experience, source = _experience(lambda inner: inner.degraded)
    _within(5, lambda: asyncio.run(experience.aload()))
    assert source.inner is True and experience.degraded is False


def test_another_thread_still_waits_for_the_resolution() -> None:
    """Only the resolving thread is answered degraded; others wait and share the result."""
    started, release = threading.Event(), threading.Event()

    def slow(inner: Personalization) -> None:
        started.set()
        release.wait(5)

    experience, source = _experience(slow)
    first = threading.Thread(target=lambda: experience.profile, daemon=True)
    first.start()
    assert started.wait(5)
    seen: list[Any] = []
    second = threading.Thread(target=lambda: seen.append(experience.profile), daemon=True)
    second.start()
    second.join(0.2)
    assert second.is_alive()  # waiting for the first thread's resolution
    release.set()
    first.join(5)
    second.join(5)
    assert seen[0] is not None and seen[0].id == "p-1" and source.resolves == 1


# --- in a request -----------------------------------------------------------------------------


def consent_kept_in_the_profile(request: HttpRequest) -> bool:
    """A consent callable that looks at the visitor's profile (e.g. consent kept as a trait)."""
    profile = request.experience.profile  # type: ignore[attr-defined]
    return profile is None or bool(profile.traits.get("consent", True))


@pytest.mark.django_db(transaction=True)
def test_a_consent_callable_reading_request_experience(
    emulator: EmulatorHandle, settings: Any, caplog: pytest.LogCaptureFixture
) -> None:
    settings.EXPERIENCE_CONSENT = "tests.middleware.test_reentry.consent_kept_in_the_profile"
    settings.EXPERIENCE_TIMEOUT = 1.0
    with caplog.at_level(logging.WARNING, logger="django_experience"):
        response = _within(5, lambda: Client().get("/mw/page/"))
    assert response.status_code == 200
    assert response.json()["hero"] == "hero-new"  # the page itself is personalized
    assert "while the profile is being resolved" in caplog.text
