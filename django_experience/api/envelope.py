"""Read the API's response envelope: ``{"data": ..., "error": ..., "message": ...}``.

Tolerant of the forms seen in the wild: ``error`` may be ``null``, a boolean, ``{"code": ...}``
or a bare code string. An answer that is an error (by status or by envelope) becomes the typed
exception of :mod:`django_experience.api.errors`; a success whose body is not the envelope
becomes :class:`MalformedResponse`.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from django_experience.api.errors import MalformedResponse, Redirected, error_for
from django_experience.api.retry import parse_retry_after
from django_experience.api.transport import RawAnswer, redact_credentials

# A surrogate written as an escape: JSON may carry a lone one ("\ud800", which JSON.stringify
# writes for a broken string); Python decodes it into a str that cannot be encoded as UTF-8, and
# a page showing it would fail as a whole.
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


def _finite(text: str) -> float | None:
    number = float(text)
    return number if math.isfinite(number) else None


# NaN, Infinity and -Infinity are not JSON, though Python's json reads them, and a number too
# large for a float (1e400) is JSON that reads as an infinity: each becomes null (what
# JSON.stringify writes for them), so the rest of the answer is used and nothing we write from
# it ({% experience_json %}) is JSON a browser's JSON.parse refuses.
_DECODER = json.JSONDecoder(parse_constant=lambda name: None, parse_float=_finite)


def _decode(body: bytes) -> Any:
    try:
        data = _DECODER.decode(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    if b"\\u" in body and _SURROGATE_ESCAPE.search(body):  # rare: the common answer skips it
        return _without_lone_surrogates(data)
    return data


def _without_lone_surrogates(value: Any) -> Any:
    """``value`` with each lone surrogate of its strings (keys too) replaced by U+FFFD, as a
    browser shows it."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return value.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
        return value
    if isinstance(value, list):
        return [_without_lone_surrogates(item) for item in value]
    if isinstance(value, dict):
        return {
            _without_lone_surrogates(key): _without_lone_surrogates(item)
            for key, item in value.items()
        }
    return value


def _error_code(error: object) -> tuple[bool, str | None]:
    """(is an error, code) for the envelope's ``error`` field."""
    if error is None or error is False:
        return False, None
    if isinstance(error, dict):
        code = error.get("code")
        return bool(error), code if isinstance(code, str) and code else None
    if isinstance(error, str):
        return bool(error), error or None
    return bool(error), None


def _summary(answer: RawAnswer) -> str:
    # Describe the body without quoting it: it may carry a visitor's traits, and errors get logged.
    content_type = answer.headers.get("Content-Type") or "no content type"
    return f"{len(answer.body)} bytes of {content_type}" if answer.body else "an empty body"


def _redirected(answer: RawAnswer, what: str) -> Redirected:
    location = answer.headers.get("Location")
    if location is not None:
        location = redact_credentials(location.strip())
    where = f"to {location[:300]!r}" if location else "without a Location"
    return Redirected(
        f"{what} answered HTTP {answer.status}, a redirect {where}; redirects are not "
        "followed: set EXPERIENCE_API_URL (the client's base_url) to the final address",
        status=answer.status,
        location=location,
    )


def unwrap(answer: RawAnswer, what: str) -> Any:
    """The envelope's ``data`` of a successful answer; raises the matching error otherwise."""
    status = answer.status
    if 300 <= status < 400:
        raise _redirected(answer, what)
    document = _decode(answer.body)
    envelope = document if isinstance(document, dict) else None
    failed_by_status = not 200 <= status < 300
    retry_after = parse_retry_after(answer.headers.get("Retry-After"))

    if envelope is None:
        if failed_by_status:
            raise error_for(
                status,
                None,
                f"{what} answered HTTP {status} with a body that is not the JSON envelope: "
                f"{_summary(answer)}",
                retry_after=retry_after,
            )
        raise MalformedResponse(
            f"{what} answered HTTP {status} with a body that is not the JSON envelope: "
            f"{_summary(answer)}",
            status=status,
        )

    failed_by_envelope, code = _error_code(envelope.get("error"))
    message = envelope.get("message")
    text = message if isinstance(message, str) and message else None
    if failed_by_status or failed_by_envelope:
        detail = f"{what} failed: {text}" if text else f"{what} failed with HTTP {status}"
        raise error_for(status, code, detail, retry_after=retry_after)

    if "data" not in envelope:
        raise MalformedResponse(f"{what} answered without a 'data' field", status=status)
    return envelope["data"]


__all__ = ["unwrap"]
