"""Errors the emulator answers with, in the API's envelope."""

from __future__ import annotations


class APIError(Exception):
    """An error answer: HTTP status, the API's ``ERR_...`` code and a message naming the cause."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def invalid_data(message: str) -> APIError:
    return APIError(400, "ERR_INVALID_DATA", message)


def config_not_found(organization: str, environment: str) -> APIError:
    return APIError(
        404,
        "ERR_CONFIG_NOT_FOUND",
        f"Organization '{organization}' with environment '{environment}' not found",
    )


def profile_not_found(profile_id: str) -> APIError:
    return APIError(404, "ERR_PROFILE_NOT_FOUND", f"Profile '{profile_id}' not found")


def namespace_mismatch(profile_id: str) -> APIError:
    return APIError(
        404,
        "ERR_NAMESPACE_MISMATCH",
        f"Profile '{profile_id}' belongs to a different organization or environment",
    )


def profile_overload(profile_id: str) -> APIError:
    return APIError(
        429,
        "ERR_PROFILE_OVERLOAD",
        f"Too many concurrent requests to profile '{profile_id}'; retry with a backoff",
    )


class ConfigError(ValueError):
    """An emulator configuration (experiences and audiences) that cannot be used."""


class DropConnection(Exception):
    """Raised by the WSGI app to ask the built-in server to close the connection unanswered."""
