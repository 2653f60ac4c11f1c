"""Who the visitor is, what is sent for them, and what their response must carry.

One ``Visitor`` per request (the middleware attaches it). It knows the profile id from the cookie
(validated), the signed-in user's mapped profile, consent, location headers and the client IP;
it makes the request's API call (at most one, plus recovery calls when the cookie's profile no
longer exists), identifies visitors, hands events that need no answer to background delivery,
and finally writes the cookie on the response.

All API calls of a request share one budget, ``EXPERIENCE_TIMEOUT``: each gets what the earlier
ones left, none starts once it is spent, and the request logs one failure line at most. An
identify that failed is not tried again in the same request.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.conf import settings
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import cached_property  # no lock, unlike functools' before 3.12
from django.utils.http import http_date

from django_experience import delivery
from django_experience.api.client import ExperienceClient, PendingProfile
from django_experience.api.errors import (
    ExperienceAPIError,
    NamespaceMismatch,
    ProfileNotFound,
    ServerError,
    TransportError,
)
from django_experience.api.events import ComponentView, component_view_events, page_event
from django_experience.api.types import ProfileResult
from django_experience.breaker import CLOSED, breaker
from django_experience.clients import experience_client
from django_experience.conf import conf, import_callable
from django_experience.location import client_ip, geo_location
from django_experience.mappings import (
    answered_profile_id,
    kept_usable,
    mapped_profile_id,
    mapping_database,
    namespace,
    owned_mapping,
    profile_owned_by_someone_else,
    store_mapping,
    valid_profile_id,
)
from django_experience.personalization import (
    _offloaded,  # closes the thread's DB connections
    alters_data,  # request.experience_visitor is reachable from templates: {{ request... }}
)

logger = logging.getLogger("django_experience")

SDK_COOKIE_NAME = "ctfl-opt-aid"
"""The cookie the newer official SDK writes; read as a fallback, never written."""

VISITOR_ATTRIBUTE = "experience_visitor"
"""The request attribute holding the request's ``Visitor``."""

# -- small pure helpers --------------------------------------------------------------------


def short_id(profile_id: str | None) -> str:
    """A log-safe prefix of a profile id (never the whole id)."""
    return "-" if not profile_id else profile_id[:6] + "…"


def cookie_profile_id(cookies: Mapping[str, str]) -> str | None:
    """The valid profile id in the configured cookie, else in the newer SDK's cookie."""
    for name in (conf.COOKIE_NAME, SDK_COOKIE_NAME):
        profile_id = valid_profile_id(cookies.get(name))
        if profile_id:
            return profile_id
    return None


def request_locale(request: HttpRequest) -> str | None:
    """``request.LANGUAGE_CODE`` as ``en-US`` when i18n is on, else ``None``."""
    if not getattr(settings, "USE_I18N", False):
        return None
    code = getattr(request, "LANGUAGE_CODE", None)
    if not isinstance(code, str) or not code:
        return None
    language, _, region = code.replace("_", "-").partition("-")
    if not language.isalpha():
        return None
    return f"{language.lower()}-{region.upper()}" if region else language.lower()


def build_page_event(request: HttpRequest) -> dict[str, Any]:
    """The page event of this request (URL, referrer, user agent, locale, utm campaign)."""
    referrer = request.META.get("HTTP_REFERER", "")
    return page_event(
        request.build_absolute_uri(),
        referrer=referrer if isinstance(referrer, str) else "",
        user_agent=request.META.get("HTTP_USER_AGENT") or None,
        locale=request_locale(request),
    )


_expires_at: tuple[int, str] = (-1, "")  # (a whole second since the epoch, its http_date)


def cookie_expires(max_age: int) -> str:
    """The ``expires`` a cookie lasting ``max_age`` seconds from now gets: what
    ``set_cookie(max_age=...)`` writes, ``http_date(time.time() + max_age)`` (whole seconds),
    formatted once per second instead of on every response that rewrites the cookie."""
    global _expires_at
    moment = int(time.time() + max_age)
    at, text = _expires_at
    if at != moment:
        text = http_date(moment)
        _expires_at = (moment, text)  # one tuple: threads see an old or a new pair
    return text


def user_id_for(user: Any) -> str:
    """The user id sent with identify: ``EXPERIENCE_USER_ID(user)`` or the primary key."""
    path = conf.USER_ID
    value = import_callable(path)(user) if path else user.pk
    return str(value)


def traits_for(user: Any) -> dict[str, Any]:
    """The traits sent when ``user`` is identified (``EXPERIENCE_USER_TRAITS(user)``)."""
    path = conf.USER_TRAITS
    if not path:
        return {}
    traits = import_callable(path)(user)
    if not isinstance(traits, Mapping):
        raise TypeError(
            f"EXPERIENCE_USER_TRAITS must return a dict of traits, got {type(traits).__name__}"
        )
    return dict(traits)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ExperienceAPIError):
        parts = [type(exc).__name__]
        if exc.status is not None:
            parts.append(f"status={exc.status}")
        if exc.code:
            parts.append(f"code={exc.code}")
        return " ".join(parts)
    return type(exc).__name__


def _counts_against_breaker(exc: BaseException) -> bool:
    return isinstance(exc, (TransportError, ServerError))


def guarded_call(
    operation: str,
    call: Callable[[], ProfileResult],
    profile_id: str | None,
    *,
    report: Callable[..., None] | None = None,
) -> ProfileResult | None:
    """Run an API call behind the breaker; ``None`` (after one log line) when it fails.

    ``report(message, *args)`` writes that line (default: a warning on the package's logger;
    a visitor passes its own, which warns once per request).
    """
    if not breaker.allow():
        logger.debug("Experience API %s skipped: circuit open; serving baseline", operation)
        return None
    settled = False
    try:
        result = call()
        settled = True
        breaker.record_success()
        return result
    except Exception as exc:
        settled = True
        opened = False
        if _counts_against_breaker(exc):
            opened = breaker.record_failure()
        elif isinstance(exc, ExperienceAPIError):  # the API answered (404, 429, 400...): it is up
            breaker.record_success()
        else:  # a fault of ours says nothing about the API
            breaker.release()
        (report or logger.warning)(
            "Experience API %s failed for profile %s (%s); serving baseline%s",
            operation,
            short_id(profile_id),
            _describe(exc),
            f"; circuit open for {conf.BREAKER_COOLDOWN:g}s" if opened else "",
        )
        return None
    finally:
        if not settled:
            # A BaseException (gevent.Timeout, KeyboardInterrupt, SystemExit) says nothing
            # about the API; without this a half-open breaker's probe slot stays claimed and
            # no request would ever probe the API again.
            breaker.release()


def _usable(result: ProfileResult) -> ProfileResult:
    answered_profile_id(result.profile.id)
    return result


_settlers: dict[int, ThreadPoolExecutor] = {}
_settlers_lock = threading.Lock()


def _new_settlers_lock() -> None:
    global _settlers_lock
    _settlers_lock = threading.Lock()  # a fork while another thread held it: not held here


if hasattr(os, "register_at_fork"):  # not on Windows, which does not fork
    os.register_at_fork(after_in_child=_new_settlers_lock)


def _settler() -> ThreadPoolExecutor:
    """This process's threads for unread early updates (a forked child gets its own)."""
    pid = os.getpid()
    executor = _settlers.get(pid)
    if executor is None:
        # Locked: two first requests at once would each start threads, one pair left idle.
        with _settlers_lock:
            executor = _settlers.get(pid)
            if executor is None:
                executor = _settlers[pid] = ThreadPoolExecutor(
                    2, thread_name_prefix="experience-settle"
                )
    return executor


def _settle(pending: PendingProfile, page_event: dict[str, Any], budget: float) -> None:
    try:
        pending.result(timeout=budget)
    except Exception as exc:
        logger.debug("Experience early update failed (%s); page view queued", type(exc).__name__)
        delivery.enqueue(page_event)


MIN_CALL_SECONDS = 0.01
"""A call is not started with less of the request's budget left than this: it could not be
answered in time, and the API might still act on it (a profile created for nobody)."""


def _time_left(deadline: float) -> float:
    return deadline - time.monotonic()


# -- the request's visitor -----------------------------------------------------------------


class Visitor:
    """One request's visitor.

    ``personalized=False``: no page resolution (POST and friends: track/identify only).
    ``excluded=True``: the middleware excluded the request (paths, bots, prefetches): sign-in
    sends nothing either (the user is identified on their first personalized page instead).
    """

    def __init__(self, request: HttpRequest, *, personalized: bool, excluded: bool = False) -> None:
        self.request = request
        self.personalized = personalized and not excluded
        self.excluded = excluded
        self.profile_id: str | None = None  # the id the response's cookie must carry
        self._answered = False  # the API answered with the profile: the cookie is rewritten
        self.page_sent = False
        self.signed_out = False
        self._mapping_unknown = False
        self._identify_failed = False  # an identify of this request failed: not tried again
        self._api_seconds = 0.0  # what this request's API calls took so far
        self._reported = False  # the request's one failure line was written
        # Events sent while the middleware is handling the request wait here and go to
        # delivery together with the response: one queue operation for a page's component
        # views instead of one each. ``holding`` is set by the middleware only.
        self.holding = False
        # Held events are payloads, or component views with their anonymousId: those become
        # events only on release, all of a page's in one pass.
        self._held: list[dict[str, Any] | tuple[str, ComponentView]] = []
        self._lock = threading.Lock()
        # The page's update, sent before the view ran (prefetch), and the profile it is for.
        self._pending: PendingProfile | None = None
        self._pending_for: str | None = None
        self.view_func: Callable[..., Any] | None = None  # the view, set by the middleware

    # state derived from the request, computed on first use

    @cached_property
    def mode(self) -> str:
        # A HEAD request is not a page view (monitors and link checkers send them): it asks, as
        # preflight does, so its headers match the GET's, and stores nothing.
        return "preflight" if self.request.method == "HEAD" else conf.MODE

    @cached_property
    def cookie_id(self) -> str | None:
        return cookie_profile_id(self.request.COOKIES)

    @cached_property
    def consent(self) -> bool:
        path = conf.CONSENT
        if not path:
            return True
        try:
            return bool(import_callable(path)(self.request))
        except Exception:
            logger.exception("EXPERIENCE_CONSENT failed; treating the visitor as not consenting")
            return False

    @cached_property
    def _mapped_id(self) -> str | None:
        if self.signed_out or not self.consent:
            return None
        try:
            return mapped_profile_id(getattr(self.request, "user", None))
        except Exception:  # the database failing must not cost the visitor's events
            logger.warning("Experience could not read the profile mapping; using the cookie")
            self._mapping_unknown = True
            return None

    def known_id(self) -> str | None:
        """The profile id to use for this visitor, if there is one already."""
        if self.profile_id:
            return self.profile_id
        if not self.consent or self.signed_out:
            return None
        return self._mapped_id or self.cookie_id

    @alters_data
    def anonymous_id(self) -> str:
        """The visitor's id for events sent without an answer (a fresh UUID if there is none)."""
        with self._lock:
            known = self.known_id()
            if known:
                return known
            fresh = str(uuid.uuid4())
            if self.consent:
                self.profile_id = fresh  # the batch endpoint creates it; the cookie keeps it
            return fresh

    def _options(self) -> dict[str, Any]:
        options: dict[str, Any] = {"locale": request_locale(self.request)}
        if self.consent:
            features = list(conf.FEATURES)
            if features:
                options["features"] = features
            location = geo_location(self.request.META)
            if location:
                options["location"] = location
            if "location" in features:
                options["ip"] = client_ip(self.request)
        return options

    @cached_property
    def page_event(self) -> dict[str, Any]:
        """This request's page event, built once: a failed call's page view is queued for
        background delivery as the very same event (same ``messageId``)."""
        return build_page_event(self.request)

    def _page_events(self) -> list[dict[str, Any]]:
        """The page event to send (and store) with this request's next stored call, if any.

        None in ``preflight`` mode: the browser SDK sends the page events there, and a stored
        one from the server would count every page view twice.
        """
        if not self.personalized or self.page_sent or self.mode == "preflight":
            return []
        return [self.page_event]

    # the request's time budget --------------------------------------------------------------

    @cached_property
    def budget(self) -> float:
        """``EXPERIENCE_TIMEOUT``: the seconds all of this request's API calls may take together
        (read when the request's first call starts)."""
        return conf.TIMEOUT

    def budget_left(self) -> float:
        """Seconds of the request's budget its API calls have not used yet."""
        return self.budget - self._api_seconds

    def _report(self, message: str, *args: object) -> None:
        """A failure line: a warning the first time in this request, debug afterwards."""
        level = logging.DEBUG if self._reported else logging.WARNING
        self._reported = True
        logger.log(level, message, *args)

    def _guarded(
        self,
        operation: str,
        call: Callable[[float], ProfileResult],
        profile_id: str | None,
    ) -> ProfileResult | None:
        """``call(deadline)`` behind the breaker, with what is left of the request's budget.

        The budget is the API time of the whole request: each call gets what the earlier ones
        left (every HTTP request it makes passes ``timeout=`` the time left until
        ``deadline``), and none starts once it is spent. Time the view spends between calls
        does not count: the budget bounds what the API adds to the response time.
        """
        left = self.budget_left()
        if left < MIN_CALL_SECONDS:
            self._report(
                "Experience API %s skipped for profile %s: the request's time budget (%gs) is "
                "spent; serving baseline",
                operation,
                short_id(profile_id),
                self.budget,
            )
            return None
        started = time.monotonic()
        deadline = started + left
        try:
            return guarded_call(
                operation, lambda: _usable(call(deadline)), profile_id, report=self._report
            )
        finally:
            with self._lock:
                self._api_seconds += time.monotonic() - started

    def _call(
        self,
        operation: str,
        target: str | None,
        events: list[dict[str, Any]],
        preflight: bool,
        pending: PendingProfile | None = None,
    ) -> ProfileResult | None:
        """One call (plus recovery calls when ``target`` no longer exists), in one budget.

        ``pending``: the call, already sent (:meth:`prefetch`); its answer is read here.
        """
        try:
            error = None if pending is None else pending.send_error
            if error is not None and self.budget_left() < MIN_CALL_SECONDS:
                # Sending early spent the budget (a host name that never resolves, say):
                # what it met is the failure to judge and report, not the spent budget.
                def failed() -> ProfileResult:
                    raise error

                return guarded_call(operation, failed, target, report=self._report)
            return self._guarded(
                operation, self._recovering(target, events, preflight, pending), target
            )
        finally:
            if pending is not None:
                pending.cancel()  # not read (breaker opened, budget spent): close it

    def _recovering(
        self,
        target: str | None,
        events: list[dict[str, Any]],
        preflight: bool,
        pending: PendingProfile | None,
    ) -> Callable[[float], ProfileResult]:
        def call(deadline: float) -> ProfileResult:
            if pending is not None:  # sent early with this request's client and options
                try:
                    return pending.result(timeout=_time_left(deadline))
                except (ProfileNotFound, NamespaceMismatch) as exc:
                    return recover(exc, deadline, experience_client(), self._options())
            client = experience_client()  # inside: a misconfiguration is one logged failure
            options = self._options()  # inside: an open breaker costs nothing of this
            if target is None:
                return client.create_profile(
                    events, preflight=preflight, timeout=_time_left(deadline), **options
                )
            try:
                return client.update_profile(
                    target, events, preflight=preflight, timeout=_time_left(deadline), **options
                )
            except (ProfileNotFound, NamespaceMismatch) as exc:
                return recover(exc, deadline, client, options)

        def recover(
            error: ExperienceAPIError,
            deadline: float,
            client: ExperienceClient,
            options: dict[str, Any],
        ) -> ProfileResult:
            """``target`` is gone (``error``): the mapped profile's update, else a new one."""
            mapped = self._mapped_id
            if mapped and mapped == target:
                self._forget_stale_mapping(mapped)
                mapped = None
            if _time_left(deadline) < MIN_CALL_SECONDS:
                raise error  # no time to recover in: this request serves baseline
            if mapped and mapped != target:
                try:
                    return client.update_profile(
                        mapped, events, preflight=preflight, timeout=_time_left(deadline), **options
                    )
                except (ProfileNotFound, NamespaceMismatch):
                    if _time_left(deadline) < MIN_CALL_SECONDS:
                        raise
            if preflight:
                fresh = str(uuid.uuid4())
                return client.update_profile(
                    fresh, events, preflight=True, timeout=_time_left(deadline), **options
                )
            return client.create_profile(events, timeout=_time_left(deadline), **options)

        return call

    def _forget_stale_mapping(self, profile_id: str) -> None:
        """The mapped profile is gone remotely: drop the mapping; the user is identified anew."""
        from django_experience.models import ProfileMapping

        try:
            using = mapping_database()
            with kept_usable(using):
                rows = ProfileMapping.objects.using(using)
                rows.filter(profile_id=profile_id, **namespace()).delete()
        except Exception:
            logger.exception("Experience could not remove a stale profile mapping")
        self.__dict__["_mapped_id"] = None

    # sending the page's update before the view runs -------------------------------------

    @alters_data
    def prefetch(self) -> None:
        """Send this page's profile update now: the API answers while the view works, and
        :meth:`resolve` reads the answer when a tag first asks.

        Only the plain case: a returning visitor in ``update`` mode who needs no identify.
        Anything else (a new visitor, a sign-in, preflight, an open breaker) resolves when
        asked, as without prefetching.
        """
        if not self.personalized or self.mode != "update" or self.page_sent:
            return
        if self._pending is not None or not self.consent or breaker.state != CLOSED:
            return
        try:
            if self._unidentified_user() is not None:
                return
            target = self.known_id()
            left = self.budget_left()
            if target is None or left < MIN_CALL_SECONDS:
                return
            started = time.monotonic()
            client = experience_client()
            self._pending = client.begin_update_profile(
                target, [self.page_event], timeout=left, **self._options()
            )
            self._pending_for = target
            self.page_sent = True  # on its way: an identify in the view must not send it again
            with self._lock:  # sending counts, the view does not
                self._api_seconds += time.monotonic() - started
        except Exception:  # resolve() makes the call as usual
            logger.debug("Experience could not send the page's update early", exc_info=True)

    def _take_pending(self, target: str | None) -> PendingProfile | None:
        """The update sent early, if it is for ``target``; else it is dropped (the visitor
        signed out meanwhile: the page view it carried stays with the old profile)."""
        pending, self._pending = self._pending, None
        if pending is None or (target is not None and target == self._pending_for):
            return pending
        pending.cancel()
        return None

    def _settle_unread(self) -> None:
        """The update sent early was never asked for (a cache hit, a branch without tags): its
        answer is read off the request, and the page view counts as sent. Should the update
        fail, the page event goes to background delivery instead (same ``messageId``: it is
        stored once)."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        try:
            page = self._payload(self.page_event)
            _settler().submit(_offloaded, _settle, pending, page, self.budget)
        except Exception:  # no thread to be had (interpreter exiting): drop it
            pending.cancel()

    @alters_data
    def cancel_pending(self) -> None:
        """Drop an update sent early whose answer nobody will read (its connection closes)."""
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.cancel()

    # PersonalizationSource ---------------------------------------------------------------

    @alters_data
    def resolve(self) -> ProfileResult | None:
        if not self.personalized:
            return None
        preflight = self.mode == "preflight"
        # A user signed in where the middleware did not see it (an excluded path, before it was
        # installed) is identified now, in either mode: a sign-in is stored even in preflight.
        user = self._unidentified_user()
        if user is not None:
            try:
                return self.sign_in(user)  # one call: page view (update mode) and identify
            except Exception:  # a failing traits/user id callable: personalize anonymously
                logger.exception("Experience identify of a signed-in user failed")
        target = self.known_id()
        if preflight and target is None:
            target = str(uuid.uuid4())  # the browser SDK creates this profile later
        # In preflight mode the page event is evaluated (utm audiences) but not stored.
        events = [self.page_event] if preflight else self._page_events()
        pending = None if preflight else self._take_pending(target)
        if pending is not None:
            result = self._call("update", target, [self.page_event], False, pending)
            if result is None:
                self.page_sent = False  # not known to be stored: delivery sends it (same id)
        elif not events and target is not None:
            result = self._get(target)  # the page view was already sent with an identify
        else:
            events = events or [self.page_event]
            operation = "preflight" if preflight else "update"
            result = self._call(operation, target, events, preflight)
        if result is not None:
            if not preflight:
                self.page_sent = True
            if self.consent:
                self.profile_id = result.profile.id
                self._answered = True
        return result

    def _unidentified_user(self) -> Any:
        """A signed-in user without a mapping (signed in before, elsewhere, or by a test)."""
        if self._identify_failed:
            return None  # failed earlier in this request: the next request identifies them
        user = getattr(self.request, "user", None)
        if not self.consent or self.signed_out or not getattr(user, "is_authenticated", False):
            return None
        unmapped = self._mapped_id is None and not self._mapping_unknown
        return user if unmapped else None

    def _get(self, target: str) -> ProfileResult | None:
        locale = request_locale(self.request)

        def call(deadline: float) -> ProfileResult:
            client = experience_client()
            return client.get_profile(target, locale=locale, timeout=_time_left(deadline))

        return self._guarded("get", call, target)

    @alters_data
    def identify(
        self, user_id: str, traits: dict[str, Any], user: Any = None
    ) -> ProfileResult | None:
        if not self.consent:
            logger.debug("Experience identify skipped: no consent")
            return None
        if self._identify_failed:
            logger.debug("Experience identify skipped: one failed in this request already")
            return None
        from django_experience.api.events import identify_event
        from django_experience.destinations.fanout import upsert_to_destinations
        from django_experience.signals import profile_identified

        if user is None:
            request_user = getattr(self.request, "user", None)
            if request_user is not None and getattr(request_user, "is_authenticated", False):
                try:
                    if user_id_for(request_user) == user_id:
                        user = request_user
                except Exception:
                    logger.exception("EXPERIENCE_USER_ID failed")
        upsert_to_destinations(user_id, traits, user)  # background; whatever the API answers
        target = None if self.signed_out else (self.profile_id or self.cookie_id)
        try:
            mapping = owned_mapping(user, user_id)
            if target and profile_owned_by_someone_else(target, user, user_id):
                target = None  # the device's profile belongs to another person: do not merge it
        except DatabaseError as exc:
            # Whose profile this is cannot be checked: merging could hand one person's profile
            # to another. Personalized anonymously; a signed-in user is identified on a later
            # request.
            logger.warning(
                "Experience could not read the profile mappings (%s); identify skipped",
                _describe(exc),
            )
            self._identify_failed = True
            self._mapping_unknown = True  # not read again in this request
            self.__dict__["_mapped_id"] = None
            return None
        # A stored id that is not one is not served: the answer's id replaces it.
        mapped = valid_profile_id(mapping.profile_id) if mapping is not None else None
        if target is None:
            target = mapped
        self.__dict__["_mapped_id"] = mapped
        page = self._page_events()
        # Stored even in preflight mode (the point of a sign-in), but without a page event.
        events = [*page, identify_event(user_id, traits)]
        result = self._call("identify", target, events, preflight=False)
        if result is None:
            self._identify_failed = True
            if mapped is not None:
                self.profile_id = mapped
            return None
        self.page_sent = self.page_sent or bool(page)
        self.signed_out = False
        self.profile_id = self._store_mapping(result.profile.id, user, user_id)
        self._answered = True
        self.__dict__["_mapped_id"] = self.profile_id
        profile_identified.send(
            sender=Visitor, user_id=user_id, traits=traits, profile_id=self.profile_id, user=user
        )
        return result

    @staticmethod
    def _store_mapping(profile_id: str, user: Any, user_id: str) -> str:
        """The profile id mapped to the identified person; the answer's own when the mapping
        cannot be written: the identify was stored, so the page still gets its answer (and
        the cookie its id), and a signed-in user's next request, finding no mapping,
        identifies them again."""
        try:
            return store_mapping(profile_id, user=user, external_id=user_id)
        except DatabaseError as exc:  # rolled back to its savepoint: the request's is usable
            logger.warning(
                "Experience could not store the profile mapping (%s); serving the answered "
                "profile unmapped",
                _describe(exc),
            )
            return profile_id

    @alters_data
    def send(self, event: dict[str, Any]) -> None:
        if not self.consent and event.get("type") != "page":
            return
        payload = self._payload(event)
        if not self._hold(payload):
            delivery.enqueue(payload)

    def _payload(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` as the batch endpoint takes it: with this visitor's ``anonymousId``."""
        return {**event, "anonymousId": self.anonymous_id()}

    @alters_data
    def view(self, component: ComponentView) -> None:
        """Send the event of a component view (consent permitting), or hold the view.

        Only views of the experiences in ``EXPERIENCE_STICKY_EXPERIENCES`` are sent: the API
        pins the variant of every view it stores, and the browser SDK reports views only of the
        experiences configured sticky.
        """
        if not self.consent or component.experience_id not in conf.STICKY_EXPERIENCES:
            return
        held = (self.anonymous_id(), component)
        if not self._hold(held):
            delivery.enqueue(component_view_events([held])[0])

    def _hold(self, item: dict[str, Any] | tuple[str, ComponentView]) -> bool:
        """Keep ``item`` for :meth:`release_held` while holding; False when not holding."""
        # Under the lock: an item checked in just before the release would be held forever.
        with self._lock:
            if self.holding:
                self._held.append(item)
            return self.holding

    @alters_data
    def release_held(self, first: dict[str, Any] | None = None, *, seen: bool = True) -> None:
        """Hand the held events (after ``first``, if given) to delivery; stop holding.

        ``seen=False`` drops the held component views (the visitor did not see the page); the
        other events go as usual.
        """
        with self._lock:
            held, self._held, self.holding = self._held, [], False
        if not seen:
            held = [item for item in held if not isinstance(item, tuple)]
        events = [] if first is None else [first]
        views = [item for item in held if isinstance(item, tuple)]
        if len(views) == len(held):  # only views (or nothing): a page's usual case
            if views:
                events += component_view_events(views)
        else:  # each view's event takes the view's place among the held events
            built = iter(component_view_events(views))
            for item in held:
                events.append(next(built) if isinstance(item, tuple) else item)
        if events:
            delivery.enqueue_many(events)

    def tracks_component_views(self) -> bool:
        # Nothing listed in EXPERIENCE_STICKY_EXPERIENCES (the default): no view is ever sent.
        return conf.TRACK_COMPONENT_VIEWS and self.consent and bool(conf.STICKY_EXPERIENCES)

    def shares_profile(self) -> bool:
        return self.consent

    # sign-in, sign-out --------------------------------------------------------------------

    @alters_data
    def sign_in(self, user: Any) -> ProfileResult | None:
        return self.identify(user_id_for(user), traits_for(user) if self.consent else {}, user)

    @alters_data
    def sign_out(self) -> None:
        """Forget the profile: the next request starts a fresh anonymous one."""
        self.signed_out = True
        self.profile_id = None
        self.__dict__["_mapped_id"] = None

    # the response ------------------------------------------------------------------------

    @alters_data
    def finish(self, response: HttpResponseBase) -> None:
        """Queue the page view nobody sent (update mode), then write or delete the cookie.

        That is the page view of a request that never asked for personalization, or whose call
        failed: background delivery retries it, the visitor does not wait.

        The page's component views are dropped when the visitor never saw the page: a ``HEAD``
        request (no body), or a server error (a template that failed after a variant was
        rendered). They would pin variants nobody was shown.
        """
        if self._pending is not None:
            self._settle_unread()
        page = None
        if self.personalized and self.mode == "update" and not self.page_sent:
            try:
                page = self._payload(self.page_event)
                self.page_sent = True
            except Exception:
                logger.exception("Experience page event could not be queued")
        try:
            seen = self.request.method != "HEAD" and response.status_code < 500
            self.release_held(page, seen=seen)  # the page view first: it happened first
        except Exception:
            logger.exception("Experience events could not be queued")
        self.write_cookie(response)

    @alters_data
    def write_cookie(self, response: HttpResponseBase) -> None:
        name = conf.COOKIE_NAME
        current = self.request.COOKIES.get(name)
        if not self.consent:
            for cookie in dict.fromkeys((name, SDK_COOKIE_NAME)):
                if cookie in self.request.COOKIES:
                    self._delete_cookie(response, cookie)
            return
        if self.profile_id:
            # Rewritten after every answer, as the browser SDK does: its one-year lifetime runs
            # from the last visit, not the first. Only then: other responses stay cacheable.
            if self.profile_id != current or self._answered:
                max_age = conf.COOKIE_AGE
                response.set_cookie(
                    name,
                    self.profile_id,
                    max_age=max_age,
                    expires=cookie_expires(max_age),  # set_cookie would format the same
                    path="/",
                    domain=conf.COOKIE_DOMAIN,
                    secure=self._secure(),
                    httponly=False,
                    samesite="Lax",
                )
        elif current is not None and (self.signed_out or valid_profile_id(current) is None):
            self._delete_cookie(response, name)
        if self.signed_out and name != SDK_COOKIE_NAME and SDK_COOKIE_NAME in self.request.COOKIES:
            self._delete_cookie(response, SDK_COOKIE_NAME)  # not the cookie just written

    def _secure(self) -> bool:
        secure = conf.COOKIE_SECURE
        return self.request.is_secure() if secure is None else secure

    def _delete_cookie(self, response: HttpResponseBase, name: str) -> None:
        response.delete_cookie(name, path="/", domain=conf.COOKIE_DOMAIN, samesite="Lax")

    @property
    def has_response_work(self) -> bool:
        """Whether ``finish`` may have anything to do (cheap; no I/O)."""
        return (
            self.personalized or self.profile_id is not None or self.signed_out or bool(self._held)
        )


def visitor_for(request: HttpRequest) -> Visitor:
    """The request's visitor; an excluded one when the middleware did not see the request."""
    visitor = getattr(request, VISITOR_ATTRIBUTE, None)
    if isinstance(visitor, Visitor):
        return visitor
    visitor = Visitor(request, personalized=False, excluded=True)
    setattr(request, VISITOR_ATTRIBUTE, visitor)
    return visitor


__all__ = [
    "SDK_COOKIE_NAME",
    "VISITOR_ATTRIBUTE",
    "Visitor",
    "build_page_event",
    "cookie_profile_id",
    "guarded_call",
    "request_locale",
    "traits_for",
    "user_id_for",
    "valid_profile_id",
    "visitor_for",
]
