"""``ExperienceMiddleware``: attach ``request.experience``, write the cookie and cache headers.

Thin on purpose. On the way in it decides cheaply whether the request is personalized at all
(excluded paths, methods other than GET/HEAD, bots, browser prefetches) and attaches a lazy
``Personalization``; no API call happens here. On the way out it lets the visitor queue the
unsent page view and write the cookie, and marks responses that used personalization private.
Works under WSGI and ASGI.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponseBase
from django.utils.cache import (
    get_max_age,
    has_vary_header,
    patch_cache_control,
    patch_vary_headers,
)

from django_experience.conf import conf, default_exclude_paths, remembered
from django_experience.personalization import NULL_PERSONALIZATION, Personalization
from django_experience.visitor import SDK_COOKIE_NAME, VISITOR_ATTRIBUTE, Visitor

logger = logging.getLogger("django_experience")

EXCLUDED = "excluded"  # no personalization at all: the null object
PASSIVE = "passive"  # track/identify work, but no page is personalized (POST and friends)
PERSONALIZED = "personalized"

# Matched against the lower-cased user agent: re.IGNORECASE makes this search 10x slower.
_BOTS = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|facebookexternalhit|mediapartners|bingpreview|"
    r"pingdom|uptimerobot|lighthouse|python-requests|curl/|wget/"
)


class _AnyOf:
    """Patterns that cannot share one regex, searched one by one."""

    def __init__(self, patterns: list[re.Pattern[str]]) -> None:
        self.patterns = patterns

    def search(self, text: str) -> bool:
        return any(pattern.search(text) for pattern in self.patterns)


Exclusions = re.Pattern[str] | _AnyOf


@functools.lru_cache(maxsize=16)
def _compile_exclusions(patterns: tuple[str, ...]) -> Exclusions | None:
    """One regex for the ``EXPERIENCE_EXCLUDE_PATHS`` value (compiled once per value)."""
    valid: list[re.Pattern[str]] = []
    for pattern in patterns:
        try:
            valid.append(re.compile(pattern))
        except re.error:  # reported by the system check django_experience.E006
            logger.error("EXPERIENCE_EXCLUDE_PATHS: ignoring the invalid regex %r", pattern)
    if not valid:
        return None
    # A global flag such as (?i) applies to its own pattern only: joined, it would fail (or,
    # before Python 3.11, apply to every pattern), so such patterns are searched one by one.
    # So are patterns that name a group alike, which no single regex can hold.
    if all(pattern.flags == re.UNICODE for pattern in valid):
        try:
            return re.compile("|".join(f"(?:{pattern.pattern})" for pattern in valid))
        except re.error:
            pass
    return _AnyOf(valid)


def admin_paths(urlconf: str | ModuleType | None = None) -> list[str] | None:
    """Where the URLconf mounts each admin site: their index paths (``/admin/``), as seen in
    ``request.path_info`` (no script prefix), one per language under ``i18n_patterns``.

    ``None`` when the URLconf could not be loaded (ask again later); ``[]`` without an admin.
    """
    from django.apps import apps

    if not apps.is_installed("django.contrib.admin"):
        return []
    from django.conf import settings
    from django.conf.urls.i18n import is_language_prefix_patterns_used
    from django.contrib.admin.sites import all_sites
    from django.urls import NoReverseMatch, get_resolver, get_script_prefix, reverse
    from django.utils import translation

    # A module works as well as its dotted path (request.urlconf may be either).
    conf_of_request: Any = urlconf or settings.ROOT_URLCONF
    languages: list[str | None] = [None]  # as reverse() answers for this request
    prefix = get_script_prefix()
    found: set[str] = set()
    try:
        get_resolver(conf_of_request).url_patterns  # noqa: B018 - imports it, its sites too
        if is_language_prefix_patterns_used(conf_of_request)[0]:
            languages = [code for code, _ in settings.LANGUAGES]  # under i18n_patterns
        for site in list(all_sites):
            for language in languages:
                with translation.override(language):
                    try:
                        url = reverse(f"{site.name}:index", urlconf=conf_of_request)
                    except NoReverseMatch:  # this site is not mounted (or not in this language)
                        continue
                path = "/" + url[len(prefix) :] if url.startswith(prefix) else url
                if path != "/":  # an admin at the root: excluding it would exclude every page
                    found.add(path)
    except Exception:  # a URLconf that does not import: the request itself reports that
        logger.debug("Experience could not find the admin in the URLconf", exc_info=True)
        return None
    return sorted(found)


_NOT_YET = object()


def _exclusions(request: HttpRequest) -> Exclusions | None:
    """The request's exclusion regex: remembered per URLconf until the settings change."""
    by_urlconf: dict[object, Exclusions | None] = remembered(
        "django_experience.middleware.exclusions", dict
    )
    urlconf = getattr(request, "urlconf", None)
    pattern = by_urlconf.get(urlconf, _NOT_YET)
    if pattern is not _NOT_YET:
        return pattern  # type: ignore[return-value]
    configured, extra = conf.EXCLUDE_PATHS_CONFIGURED, conf.EXCLUDE_PATHS_EXTRA
    if configured is not None:  # the setting replaces every default, the admin's too
        by_urlconf[urlconf] = pattern = _compile_exclusions((*configured, *extra))
        return pattern
    admin = admin_paths(urlconf)
    admin_patterns = ("^" + re.escape(path) for path in admin or ())
    pattern = _compile_exclusions((*default_exclude_paths(), *admin_patterns, *extra))
    if admin is not None:
        by_urlconf[urlconf] = pattern
    return pattern


def classify(request: HttpRequest) -> str:
    """``excluded``, ``passive`` or ``personalized``; cheap, no I/O."""
    meta = request.META
    if meta.get("HTTP_SEC_PURPOSE", "").startswith("prefetch") or (
        meta.get("HTTP_PURPOSE") == "prefetch" or meta.get("HTTP_X_MOZ") == "prefetch"
    ):
        return EXCLUDED
    exclusions = _exclusions(request)
    if exclusions is not None and exclusions.search(request.path_info):
        return EXCLUDED
    if _BOTS.search(meta.get("HTTP_USER_AGENT", "").lower()):
        return EXCLUDED
    if not _serves_host(request):
        return EXCLUDED
    if request.method not in ("GET", "HEAD"):
        return PASSIVE
    return PERSONALIZED


def _serves_host(request: HttpRequest) -> bool:
    """Whether the request is for a host of ``ALLOWED_HOSTS``. One for another host (a scanner's)
    is left to Django, which answers 400 wherever its host is read (``CommonMiddleware`` does so
    first): its page event, which reads it, would fail with an error logged each time."""
    try:
        request.get_host()
    except DisallowedHost:
        return False
    return True


def _shared_cacheable(response: HttpResponseBase) -> bool:
    """Whether a response says any cache may keep it for everyone (a max-age, no private, no
    ``Vary: Cookie``): what ``@cache_page`` makes of a view before this middleware sees it."""
    cache_control = response.get("Cache-Control")
    if not cache_control:
        return False
    directives = {part.split("=", 1)[0].strip().lower() for part in cache_control.split(",")}
    if directives & {"private", "no-store", "no-cache"} or has_vary_header(response, "Cookie"):
        return False
    max_age = get_max_age(response)
    return bool(max_age and max_age > 0) or "s-maxage" in directives


_warned_views: set[str] = set()


def _warn_cached_once(request: HttpRequest, response: HttpResponseBase) -> None:
    """One warning per view and process: a response that used personalization came back
    cacheable for everyone. The middleware marks it private, but a Django cache inside the
    view's stack (``@cache_page``, a cache middleware placed after this one) stored it before
    and hands it to every visitor; no header written now changes that."""
    match = getattr(request, "resolver_match", None)
    view = (getattr(match, "_func_path", None) or getattr(match, "view_name", None)) or "?"
    if view in _warned_views:
        return
    _warned_views.add(view)
    logger.warning(
        "Experience: the response of %s used personalization but came with Cache-Control "
        "%r and no Vary: Cookie. It is marked private now, but a Django cache that stored it "
        "before (cache_page, or UpdateCacheMiddleware after ExperienceMiddleware) serves this "
        "visitor's variant to everyone: add vary_on_cookie inside cache_page, or cache only "
        "what does not depend on the visitor (see the README, 'Private responses')",
        view,
        response.get("Cache-Control"),
    )


class ExperienceMiddleware:
    """Personalization for every request that should have it; never breaks a page."""

    sync_capable = True
    async_capable = True

    def __init__(
        self,
        get_response: Callable[[HttpRequest], HttpResponseBase]
        | Callable[[HttpRequest], Awaitable[HttpResponseBase]],
    ) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)
        else:
            # Django calls it when it is there; under ASGI it would cost a thread per request.
            self.process_view = self._process_view

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.async_mode:
            return self.__acall__(request)
        visitor = self.process_request(request)
        try:
            response = self.get_response(request)
        except BaseException:
            visitor.cancel_pending()
            raise
        assert isinstance(response, HttpResponseBase)
        return self.process_response(request, response)

    def _process_view(
        self,
        request: HttpRequest,
        view_func: Callable[..., Any],
        view_args: tuple[Any, ...],
        view_kwargs: dict[str, Any],
    ) -> None:
        """Send the page's update before a view that personalized its pages before runs."""
        visitor = getattr(request, VISITOR_ATTRIBUTE, None)
        if isinstance(visitor, Visitor) and visitor.personalized:
            visitor.view_func = view_func
            if _personalizes(view_func) and conf.PREFETCH:
                visitor.prefetch()

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        visitor = self.process_request(request)
        result = self.get_response(request)
        assert not isinstance(result, HttpResponseBase)
        response = await result
        if visitor.has_response_work:
            # Consent callables, the ORM and synchronous delivery must not run on the loop.
            return await sync_to_async(self.process_response)(request, response)
        return self.process_response(request, response)

    def process_request(self, request: HttpRequest) -> Visitor:
        kind = classify(request)
        visitor = Visitor(request, personalized=kind == PERSONALIZED, excluded=kind == EXCLUDED)
        visitor.holding = True  # its events go to delivery with the response (process_response)
        setattr(request, VISITOR_ATTRIBUTE, visitor)
        request.experience = (  # type: ignore[attr-defined]
            NULL_PERSONALIZATION if kind == EXCLUDED else Personalization(visitor)
        )
        return visitor

    def process_response(
        self, request: HttpRequest, response: HttpResponseBase
    ) -> HttpResponseBase:
        visitor = getattr(request, VISITOR_ATTRIBUTE, None)
        if not isinstance(visitor, Visitor):
            return response
        if not visitor.has_response_work:
            visitor.holding = False  # what a streamed body sends later goes out at once
            return response
        try:
            visitor.finish(response)
        except Exception:
            logger.exception("Experience middleware could not finish the response")
        experience = getattr(request, "experience", None)
        used = isinstance(experience, Personalization) and experience.used
        if visitor.view_func is not None:
            _learn(visitor.view_func, used)
        if used and _shared_cacheable(response):
            _warn_cached_once(request, response)
        if used or conf.COOKIE_NAME in response.cookies or SDK_COOKIE_NAME in response.cookies:
            _mark_private(response)  # also when a cookie is only deleted: Set-Cookie is private
        return response


# Per view, how many of its latest requests in a row used personalization. After a few, the next
# request sends its update before the view runs (``Visitor.prefetch``); one request that does
# not use it (a cache hit, a branch without tags) starts the count again, so views that only
# sometimes personalize keep their page views in background delivery.
_personalized_streaks: dict[Callable[..., Any], int] = {}
PREFETCH_AFTER = 3
_MAX_VIEWS = 10_000


def _personalizes(view_func: Callable[..., Any]) -> bool:
    try:
        return _personalized_streaks.get(view_func, 0) >= PREFETCH_AFTER
    except TypeError:  # an unhashable callable object as a view
        return False


def _learn(view_func: Callable[..., Any], used: bool) -> None:
    try:
        streak = _personalized_streaks.get(view_func, 0)
    except TypeError:
        return
    if used:
        if streak < PREFETCH_AFTER:
            if len(_personalized_streaks) >= _MAX_VIEWS:  # views made per request: start over
                _personalized_streaks.clear()
            _personalized_streaks[view_func] = streak + 1
    elif streak:
        _personalized_streaks[view_func] = 0


def _mark_private(response: HttpResponseBase) -> None:
    """``Cache-Control: private`` and ``Vary: Cookie``: a shared cache must never serve one
    visitor's variant, or profile id, to another."""
    # Most responses carry neither header yet: set them without Django's parse-and-merge.
    if "Cache-Control" in response:
        patch_cache_control(response, private=True)
    else:
        response["Cache-Control"] = "private"
    if "Vary" in response:
        patch_vary_headers(response, ("Cookie",))
    else:
        response["Vary"] = "Cookie"


__all__ = ["ExperienceMiddleware", "classify"]
