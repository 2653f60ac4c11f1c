"""How background senders (delivery sinks, import targets) judge a failed send.

Errors are judged by their ``status`` attribute (``None`` meaning no answer arrived), the
convention of every client in this package. Kept out of ``delivery`` and ``sync`` so that both
can use it without importing each other, and free of Django like ``django_experience.api``.
"""

from __future__ import annotations

from django_experience.api.errors import (
    InvalidData,
    NamespaceMismatch,
    ProfileNotFound,
    Redirected,
    TransportError,
)

RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

# Statuses that refuse a request for what it carries: one bad payload may spoil a whole batch.
# A tuple, not a set: ``status`` is duck-typed and may be unhashable.
CONTENT_REFUSED_STATUSES = (400, 413, 422)

# 404 codes naming one profile of the request that is gone (deleted, merged away, or of another
# organization/environment): the API refuses the whole batch for it.
PROFILE_GONE_CODES = ("ERR_PROFILE_NOT_FOUND", "ERR_NAMESPACE_MISMATCH")


# Answers the Experience API never gives for a request it routed: its reference documents every
# error it answers, each 404 carries an error code, and the batch endpoints take POST. So a 404
# without a code, a 405 (method not allowed) or a 410 (gone) comes from something else on the way
# (a wrong EXPERIENCE_API_URL, a proxy, a gateway during a deploy). A tuple: see above.
UNROUTED_STATUSES = (405, 410)


def unrouted(exc: BaseException) -> bool:
    """True when the answer came from something between us and the Experience API, not from
    it (see ``UNROUTED_STATUSES``): it says nothing about the request."""
    status = getattr(exc, "status", None)
    return status in UNROUTED_STATUSES or (status == 404 and not getattr(exc, "code", None))


def retry_delay(exc: BaseException) -> float | None:
    """``None`` when ``exc`` is final; else the minimum wait before retrying (0 = backoff)."""
    if not hasattr(exc, "status") or _refused_before_sending(exc) or isinstance(exc, Redirected):
        # A redirect (no answer the client uses, like a transport error) points the client
        # elsewhere: every attempt meets it until EXPERIENCE_API_URL is corrected.
        return None
    status = getattr(exc, "status", None)
    # A transport error (no answer, or an unreadable one) says nothing about the request:
    # sending it again is safe because message ids and profile ids are stable.
    if (
        isinstance(exc, TransportError)
        or status is None
        or status in RETRYABLE_STATUSES
        or status >= 500
    ):
        retry_after = getattr(exc, "retry_after", None)
        return float(retry_after) if isinstance(retry_after, int | float) else 0.0
    return None


def _refused_before_sending(exc: BaseException) -> bool:
    """The client refused the request itself (an event that is not JSON, say): sending it again
    would fail the same way."""
    return isinstance(exc, InvalidData) and exc.status is None


def refused_for_content(exc: BaseException) -> bool:
    """True when a batch is refused for its content (so splitting it may isolate the bad one):
    by the API, or by the client before sending."""
    return _refused_before_sending(exc) or getattr(exc, "status", None) in CONTENT_REFUSED_STATUSES


def profile_gone(exc: BaseException) -> bool:
    """True when a profile of the request no longer exists here (``ERR_PROFILE_NOT_FOUND``,
    ``ERR_NAMESPACE_MISMATCH``), unlike ``ERR_CONFIG_NOT_FOUND`` or a 404 without code."""
    return isinstance(exc, ProfileNotFound | NamespaceMismatch) or (
        getattr(exc, "status", None) == 404 and getattr(exc, "code", None) in PROFILE_GONE_CODES
    )
