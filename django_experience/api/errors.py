"""Typed errors of the Experience API client.

Every error the client raises derives from :class:`ExperienceAPIError` and carries the HTTP
``status`` (``None`` when no answer was received), the API's ``code`` (``ERR_...``, or ``None``),
a human-readable ``message`` and ``retry_after`` (seconds the server asked to wait, or ``None``).
"""

from __future__ import annotations


class ExperienceAPIError(Exception):
    """Base class of every error raised by the Experience API client."""

    default_message = "Experience API error"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(self.message)

    def __str__(self) -> str:
        parts = [self.message]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.code:
            parts.append(f"code={self.code}")
        return " ".join(parts) if len(parts) == 1 else f"{parts[0]} ({', '.join(parts[1:])})"


class InvalidData(ExperienceAPIError):
    """400 ``ERR_INVALID_DATA``, or events refused by the client before sending."""

    default_message = "The request body or query parameters failed validation"


class NotFound(ExperienceAPIError):
    """A 404 whose code is none of the documented ones."""

    default_message = "Not found"


class ConfigNotFound(NotFound):
    """404 ``ERR_CONFIG_NOT_FOUND``: the organization or environment does not exist."""

    default_message = "Organization or environment not found"


class ProfileNotFound(NotFound):
    """404 ``ERR_PROFILE_NOT_FOUND``: the profile id does not exist (deleted or merged)."""

    default_message = "Profile not found"


class NamespaceMismatch(NotFound):
    """404 ``ERR_NAMESPACE_MISMATCH``: the profile belongs to another organization/environment."""

    default_message = "Profile belongs to a different organization or environment"


class ProfileOverload(ExperienceAPIError):
    """429 ``ERR_PROFILE_OVERLOAD``: too many concurrent requests to one profile."""

    default_message = "Too many concurrent requests to this profile"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = 429,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, retry_after=retry_after)


class ServerError(ExperienceAPIError):
    """A 5xx answer."""

    default_message = "The Experience API answered with a server error"


class TransportError(ExperienceAPIError):
    """No usable answer: timeout, connection failure, or a body that is not the documented JSON."""

    default_message = "The Experience API could not be reached"


class ConnectionFailed(TransportError):
    """The connection could not be made or broke before a complete answer. Retried, except a
    request the server cannot recognize when sent again (creating a profile) that it may have
    acted on already.

    ``maybe_applied`` is True when the whole request went out and the connection broke while
    waiting for or reading its answer: the server may have acted on it. It is False when the
    request never went out whole (connecting, the TLS handshake, sending), and when a kept-alive
    connection that had answered before closed without a byte of this answer (the server closed
    it as the request arrived, the usual way an idle connection ends).
    """

    default_message = "The connection to the Experience API failed"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        maybe_applied: bool = False,
    ) -> None:
        super().__init__(message, status=status, code=code, retry_after=retry_after)
        self.maybe_applied = maybe_applied


class RequestTimeout(TransportError):
    """The call's time budget ran out (connecting, waiting for or reading the answer)."""

    default_message = "The Experience API did not answer within the time budget"


class MalformedResponse(TransportError):
    """An answer whose body is not the documented JSON envelope."""

    default_message = "The Experience API answered with a body that is not the documented JSON"


class Redirected(TransportError):
    """A 3xx answer: the client follows no redirect, so ``EXPERIENCE_API_URL`` (``base_url``)
    is not the API's address (``location`` is where the answer points, or ``None``). Every
    call would meet it again: never retried."""

    default_message = "The Experience API's address redirects elsewhere; redirects are not followed"

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        location: str | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, retry_after=retry_after)
        self.location = location


class ClientError(ExperienceAPIError):
    """Any other 4xx answer. Never retried."""

    default_message = "The Experience API refused the request"


CODE_TO_ERROR: dict[str, type[ExperienceAPIError]] = {
    "ERR_INVALID_DATA": InvalidData,
    "ERR_CONFIG_NOT_FOUND": ConfigNotFound,
    "ERR_PROFILE_NOT_FOUND": ProfileNotFound,
    "ERR_NAMESPACE_MISMATCH": NamespaceMismatch,
    "ERR_PROFILE_OVERLOAD": ProfileOverload,
    "ERR_INTERNAL_SERVER_ERROR": ServerError,
}


def error_for(
    status: int, code: str | None, message: str | None, *, retry_after: float | None = None
) -> ExperienceAPIError:
    """The exception that describes an error answer with this status and code."""
    cls: type[ExperienceAPIError] | None = CODE_TO_ERROR.get(code) if code else None
    if cls is None:
        if status == 400:
            cls = InvalidData
        elif status == 404:
            cls = NotFound
        elif status == 429:
            cls = ProfileOverload
        elif status >= 500:
            cls = ServerError
        elif 300 <= status < 400:
            cls = Redirected
        else:
            cls = ClientError
    return cls(message, status=status, code=code, retry_after=retry_after)


__all__ = [
    "ClientError",
    "ConfigNotFound",
    "ConnectionFailed",
    "ExperienceAPIError",
    "InvalidData",
    "MalformedResponse",
    "NamespaceMismatch",
    "NotFound",
    "ProfileNotFound",
    "ProfileOverload",
    "Redirected",
    "RequestTimeout",
    "ServerError",
    "TransportError",
    "error_for",
]
