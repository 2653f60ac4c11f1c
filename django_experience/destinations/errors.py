"""Typed errors of the destination clients (Experiture and Releva).

Every error derives from :class:`DestinationError` and carries the HTTP ``status`` (``None`` when
no answer came back; for refusals before sending, the status the API documents for them), the
platform's ``code`` (Experiture's ``CDP_ETL....`` codes; Releva documents none), its ``message``
and the ``correlation_id`` the platform returned, if any. ``retryable`` says whether trying
again later may succeed; ``local`` that the client refused it before sending.
"""

from __future__ import annotations

REQUEST_INVALID = "CDP_ETL.VALIDATION.REQUEST_INVALID"
UNAUTHORIZED = "CDP_ETL.AUTH.UNAUTHORIZED"
FORBIDDEN = "CDP_ETL.AUTH.FORBIDDEN"
SCHEMA_MISMATCH = "CDP_ETL.VALIDATION.SCHEMA_MISMATCH"
RATE_LIMITED = "CDP_ETL.RATE.LIMITED"


class DestinationError(Exception):
    """Base class of every error raised by the destination clients."""

    default_message = "The destination refused the request"
    retryable = False
    local = False  # True when refused by the client itself, before sending

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        self.message = message or self.default_message
        self.status = status
        self.code = code
        self.correlation_id = correlation_id
        super().__init__(self.message)

    def __str__(self) -> str:
        details = [
            f"{name}={value}"
            for name, value in (
                ("status", self.status),
                ("code", self.code),
                ("correlationId", self.correlation_id),
            )
            if value is not None
        ]
        return f"{self.message} ({', '.join(details)})" if details else self.message


class RequestInvalid(DestinationError):
    """400 ``CDP_ETL.VALIDATION.REQUEST_INVALID``: the body is malformed or fails validation."""

    default_message = "The request body failed validation"


class Unauthorized(DestinationError):
    """401 ``CDP_ETL.AUTH.UNAUTHORIZED``: missing or invalid bearer token (or secret key)."""

    default_message = "Missing or invalid bearer token"


class Forbidden(DestinationError):
    """403 ``CDP_ETL.AUTH.FORBIDDEN``: the token lacks write access."""

    default_message = "The token lacks write access"


class SchemaMismatch(DestinationError):
    """422 ``CDP_ETL.VALIDATION.SCHEMA_MISMATCH``: fields that do not exist on the object."""

    default_message = "One or more fields do not exist on the profile object"


class RateLimited(DestinationError):
    """429 ``CDP_ETL.RATE.LIMITED``, after the client's own retries were used up."""

    default_message = "Rate limited"
    retryable = True

    def __init__(
        self,
        message: str | None = None,
        *,
        status: int | None = 429,
        code: str | None = None,
        correlation_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, code=code, correlation_id=correlation_id)
        self.retry_after = retry_after


class ServerError(DestinationError):
    """A 5xx answer."""

    default_message = "The destination answered with a server error"
    retryable = True


class ClientError(DestinationError):
    """Any other 4xx answer."""

    default_message = "The destination refused the request"


class NotAccepted(DestinationError):
    """A success answer that says the record was not accepted (``"accepted": false``)."""

    default_message = "The destination answered but did not accept the record"


class TransportError(DestinationError):
    """No usable answer: timeout, connection failure, or a body that is not the documented JSON."""

    default_message = "The destination could not be reached"
    retryable = True


class InvalidRecord(DestinationError, ValueError):
    """Refused before sending: the record would fail the platform's documented validation.

    ``field`` names the offending field (``None`` for the record as a whole). ``status`` and
    ``code`` are those the API documents for the refusal (400 ``REQUEST_INVALID``), so code
    that judges errors by status treats it as final; ``local`` tells it was never sent. Also a
    ``ValueError``, since it is raised for bad input.
    """

    default_message = "The record is invalid"
    local = True

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        status: int = 400,
        code: str | None = REQUEST_INVALID,
    ) -> None:
        super().__init__(message, status=status, code=code)
        self.field = field


class UnknownField(InvalidRecord):
    """Refused before sending: a field the loaded profile schema does not have (the API's 422)."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message, field=field, status=422, code=SCHEMA_MISMATCH)


BY_CODE: dict[str, type[DestinationError]] = {
    REQUEST_INVALID: RequestInvalid,
    UNAUTHORIZED: Unauthorized,
    FORBIDDEN: Forbidden,
    SCHEMA_MISMATCH: SchemaMismatch,
    RATE_LIMITED: RateLimited,
}

BY_STATUS: dict[int, type[DestinationError]] = {
    400: RequestInvalid,
    401: Unauthorized,
    403: Forbidden,
    422: SchemaMismatch,
    429: RateLimited,
}


def error_for(
    status: int,
    code: str | None,
    message: str | None,
    correlation_id: str | None = None,
    retry_after: float | None = None,
) -> DestinationError:
    """The exception describing an error answer: by documented code first, then by status."""
    cls = BY_CODE.get(code) if code else None
    if cls is None:
        cls = BY_STATUS.get(status)
    if cls is None:
        cls = ServerError if status >= 500 else ClientError
    if cls is RateLimited:
        return RateLimited(
            message, status=status, code=code, correlation_id=correlation_id,
            retry_after=retry_after,
        )
    return cls(message, status=status, code=code, correlation_id=correlation_id)


__all__ = [
    "BY_CODE",
    "FORBIDDEN",
    "RATE_LIMITED",
    "REQUEST_INVALID",
    "SCHEMA_MISMATCH",
    "UNAUTHORIZED",
    "ClientError",
    "DestinationError",
    "Forbidden",
    "InvalidRecord",
    "NotAccepted",
    "RateLimited",
    "RequestInvalid",
    "SchemaMismatch",
    "ServerError",
    "TransportError",
    "Unauthorized",
    "UnknownField",
    "error_for",
]
