"""``request.experience``: the lazy, never-raising view of one visitor's personalization.

The object asks its *source* (the request's visitor, see ``visitor.py``) for the profile the first
time anything is read, at most once, in the thread that asks. Until then no API call is made.
Every failure turns into ``degraded`` with baseline answers; nothing here raises to a view or a
template. Outside a request (e-mails, cached fragments) ``get_experience(None)`` gives the shared
null object, which answers baseline/default/fallback and sends nothing.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from django_experience.api.events import ComponentView, component_view
from django_experience.api.types import Change, Experience, Profile, ProfileResult
from django_experience.merge_tags import render_merge_tag

logger = logging.getLogger("django_experience")

# Resolution that is asked for from inside a running event loop (an async view rendering a
# template) runs here, so blocking I/O and the ORM never run on the loop's thread.
_loop_offload = ThreadPoolExecutor(thread_name_prefix="experience-resolve")


class PersonalizationSource(Protocol):
    """What a ``Personalization`` needs from the request's visitor."""

    def resolve(self) -> ProfileResult | None:
        """The profile and selections for this request (``None``: serve baseline)."""
        ...

    def identify(self, user_id: str, traits: dict[str, Any]) -> ProfileResult | None:
        """Send an identify event now; the new result, or ``None`` when it failed."""
        ...

    def send(self, event: dict[str, Any]) -> None:
        """Hand an event that needs no answer to background delivery (consent permitting)."""
        ...

    def view(self, component: ComponentView) -> None:
        """Hand a component view to background delivery (consent permitting); the source
        builds its event, possibly only when the response leaves."""
        ...

    def tracks_component_views(self) -> bool:
        """Whether component view events are sent for rendered variants."""
        ...

    def shares_profile(self) -> bool:
        """Whether the page may hand the profile to browser code (the visitor consented)."""
        ...


@dataclass(frozen=True)
class SelectedVariant:
    """The entry the API selected for a baseline entry.

    ``variant_index`` 0 means the visitor is in the experience but sees the baseline
    (``entry_id == baseline_id``). An empty ``entry_id`` is a hidden variant: render nothing.
    """

    baseline_id: str
    entry_id: str
    experience_id: str
    variant_index: int
    sticky: bool

    @property
    def hidden(self) -> bool:
        return self.entry_id == ""


def _in_event_loop() -> bool:
    # asyncio's own check without the RuntimeError get_running_loop() raises outside a loop:
    # raising and catching it cost more than the rest of a component view.
    return asyncio._get_running_loop() is not None


_T = TypeVar("_T")
_F = TypeVar("_F", bound=Callable[..., Any])


def alters_data(method: _F) -> _F:
    """Mark a method that changes state as Django's templates know it (``alters_data``): they
    call attributes that take no arguments, so ``{{ experience.forget }}`` would forget the
    profile; with the mark they render nothing (``string_if_invalid``) instead."""
    method.alters_data = True  # type: ignore[attr-defined]
    return method


def _offloaded(function: Callable[..., _T], *args: Any) -> _T:
    """One job of an offload thread; its database connections are closed afterwards.

    The ORM opens a connection per thread, and nothing else ever closes the ones of these
    threads: as Django does at the end of a request (``request_finished``), connections that
    are unusable or past ``CONN_MAX_AGE`` (by default: all of them) are closed after each job.
    """
    try:
        return function(*args)
    finally:
        from django.db import close_old_connections

        close_old_connections()


def _off_the_loop(function: Callable[..., _T], *args: Any) -> _T:
    """Call ``function`` here, or in a worker thread when this thread runs an event loop."""
    if _in_event_loop():
        return _loop_offload.submit(_offloaded, function, *args).result()
    return function(*args)


class Personalization:
    """One request's personalization. Build with a source; ``Personalization()`` is null."""

    def __init__(self, source: PersonalizationSource | None = None) -> None:
        self._source = source
        self._lock = threading.Lock()  # held while the profile is resolved
        self._result: ProfileResult | None = None
        self._resolved = source is None
        self._used = False
        # The thread running the source's resolve: reads from it (a consent or traits callable,
        # a profile_identified receiver reading request.experience) are answered degraded
        # instead of waiting for the lock their own thread holds.
        self._resolver: int | None = None
        self._reentry_logged = False
        self._views_lock = threading.Lock()
        self._viewed: set[tuple[str, str, int]] = set()

    # -- state -------------------------------------------------------------------------------

    @property
    def is_null(self) -> bool:
        """True for the null object (no middleware, no request, or an excluded request)."""
        return self._source is None

    @property
    def used(self) -> bool:
        """Whether anything asked for personalized content during this request."""
        return self._used

    @property
    def resolved(self) -> bool:
        """Whether the profile has been asked for already (successfully or not)."""
        return self._resolved and not self.is_null

    def _load(self) -> ProfileResult | None:
        if self._source is None:
            return None
        self._used = True
        if self._resolved:
            return self._result
        if self._reentered("read"):
            return None
        with self._lock:
            if not self._resolved:
                self._result = self._call_source(self._source)
                self._resolved = True
        return self._result

    def _call_source(self, source: PersonalizationSource) -> ProfileResult | None:
        try:
            return _off_the_loop(self._resolve_here, source)
        except Exception:  # never raise to a view or a template
            logger.exception("Experience personalization failed; serving baseline")
            return None

    def _resolve_here(self, source: PersonalizationSource) -> ProfileResult | None:
        """``source.resolve()``, remembering the thread it runs in (maybe an offload thread)."""
        self._resolver = threading.get_ident()
        try:
            return source.resolve()
        finally:
            self._resolver = None

    def _reentered(self, what: str) -> bool:
        """Whether this thread is resolving the profile right now (so holds the lock): code the
        resolution calls (``EXPERIENCE_CONSENT``, ``EXPERIENCE_USER_TRAITS``,
        ``EXPERIENCE_USER_ID``, a ``profile_identified`` receiver) used ``request.experience``.
        That use is answered degraded; the request logs it once."""
        if self._resolver != threading.get_ident():
            return False
        if not self._reentry_logged:
            self._reentry_logged = True
            logger.warning(
                "request.experience was used (%s) by code that runs while the profile is being "
                "resolved (EXPERIENCE_CONSENT, EXPERIENCE_USER_TRAITS, EXPERIENCE_USER_ID or a "
                "profile_identified receiver); that use gets baseline answers",
                what,
            )
        return True

    @alters_data
    async def aload(self) -> None:
        """Resolve now without blocking the event loop (for async views)."""
        if self._source is None:
            return
        await asyncio.get_running_loop().run_in_executor(_loop_offload, _offloaded, self._load)

    @alters_data
    def adopt(self, result: ProfileResult) -> None:
        """Use ``result`` from now on (an identify answered with the visitor's profile)."""
        if self._source is None or self._reentered("adopt"):
            return
        with self._lock:
            self._result = result
            self._resolved = True
            self._used = True

    @alters_data
    def forget(self) -> None:
        """Drop what was resolved (sign-out): the next read resolves a fresh profile."""
        if self._source is None or self._reentered("forget"):
            return
        with self._lock:
            self._result = None
            self._resolved = False

    # -- reading -----------------------------------------------------------------------------

    @property
    def profile(self) -> Profile | None:
        result = self._load()
        return None if result is None else result.profile

    @property
    def experiences(self) -> tuple[Experience, ...]:
        result = self._load()
        return () if result is None else result.experiences

    @property
    def changes(self) -> tuple[Change, ...]:
        result = self._load()
        return () if result is None else result.changes

    @property
    def degraded(self) -> bool:
        """True when baseline content is served because the API could not be used."""
        return self._load() is None

    def variant(self, baseline_id: str) -> SelectedVariant | None:
        """The selection for a baseline entry, or ``None`` when no experience covers it."""
        if not isinstance(baseline_id, str) or not baseline_id:
            return None
        for experience in self.experiences:
            if baseline_id in experience.variants:
                return SelectedVariant(
                    baseline_id=baseline_id,
                    entry_id=experience.variants[baseline_id],
                    experience_id=experience.experience_id,
                    variant_index=experience.variant_index,
                    sticky=experience.sticky,
                )
        return None

    def change(self, key: str, default: Any = None) -> Any:
        """The value of the inline variable ``key``, or ``default`` when there is none."""
        for change in self.changes:
            if change.key == key:
                return change.value
        return default

    def find_change(self, key: str) -> Change | None:
        """The whole change for ``key`` (with its experience and variant), or ``None``."""
        for change in self.changes:
            if change.key == key:
                return change
        return None

    def merge_tag(self, path: str, fallback: str = "") -> str:
        """A scalar from the profile by path (``traits.firstname``), else ``fallback``."""
        profile = self.profile
        try:
            return render_merge_tag(None if profile is None else profile.raw, path, fallback)
        except Exception as exc:  # never raise to a view or a template
            # The exception's type only: its message could carry profile data.
            logger.warning(
                "Experience merge tag could not be read (%s); using the fallback",
                type(exc).__name__,
            )
            logger.debug("merge tag failure", exc_info=exc)
            return fallback

    def to_json(self) -> dict[str, Any]:
        """Profile, experiences and changes in the API's JSON shape (profile ``None`` if none,
        and without consent: a throw-away profile's id must not end up stored by browser code)."""
        result = self._load()
        if result is None:
            return {"profile": None, "experiences": [], "changes": []}
        data = result.to_json()
        if self._source is not None and not self._source.shares_profile():
            data["profile"] = None
        return data

    # -- sending -----------------------------------------------------------------------------

    @alters_data
    def track(self, event: str, properties: dict[str, Any] | None = None) -> None:
        """Record a track event through background delivery (never waits, never raises)."""
        if self._source is None:
            return
        try:
            from django_experience.api.events import track_event

            _off_the_loop(self._source.send, track_event(event, properties))
        except Exception:
            logger.exception("Experience track event could not be queued")

    @alters_data
    def identify(self, user_id: str, traits: dict[str, Any] | None = None) -> None:
        """Identify the visitor now (one API call); later reads see the identified profile."""
        if self._source is None:
            return
        try:
            result = _off_the_loop(self._source.identify, str(user_id), dict(traits or {}))
        except Exception:
            logger.exception("Experience identify failed")
            return
        if result is not None:
            self.adopt(result)

    @alters_data
    def component_viewed(
        self,
        component_id: str,
        *,
        experience_id: str,
        variant_index: int,
        component_type: str = "Entry",
    ) -> None:
        """Record that a variant was shown, once per component per request."""
        if self._source is None:
            return
        key = (component_id, experience_id, variant_index)
        try:
            if not self._source.tracks_component_views():
                return
            with self._views_lock:
                if key in self._viewed:
                    return
                self._viewed.add(key)
            view = component_view(
                component_id,
                experience_id=experience_id,
                variant_index=variant_index,
                component_type=component_type,
            )
            _off_the_loop(self._source.view, view)
        except Exception:
            logger.exception("Experience component view could not be queued")

    def __repr__(self) -> str:
        if self.is_null:
            return "<Personalization null>"
        if not self._resolved:
            return "<Personalization unresolved>"
        state = "degraded" if self._result is None else "ok"
        return f"<Personalization {state}>"


NULL_PERSONALIZATION = Personalization()


def get_experience(request: object | None) -> Personalization:
    """The request's ``Personalization``, or the shared null object (never raises)."""
    if request is None:
        return NULL_PERSONALIZATION
    experience = getattr(request, "experience", None)
    if isinstance(experience, Personalization):
        return experience
    return NULL_PERSONALIZATION


__all__ = [
    "NULL_PERSONALIZATION",
    "Personalization",
    "PersonalizationSource",
    "SelectedVariant",
    "get_experience",
]
