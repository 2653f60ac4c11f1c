"""Merge tags: values read from a profile by path, the way the official SDKs read them.

A merge tag id is a path into the whole profile JSON (``traits.firstname``, ``location.city``).
The underscore form is accepted too: for ``a_b_c`` the selectors ``a_b_c``, ``a.b_c`` and
``a.b.c`` are tried in that order and the first non-empty value wins. Empty values (``""``,
``0``, ``False``, ``None``, missing) give the fallback, and so do objects and lists: only
strings, numbers and booleans render. Only the profile's own keys are read; segments such as
``__proto__``, ``constructor`` or anything starting with an underscore are refused.

Nothing here imports Django.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Scalar = str | int | float | bool

# Names the JavaScript SDK refuses (prototype pollution); we refuse them as well so a template
# behaves the same in both places. Segments starting with "_" (private, dunder) are refused too.
_FORBIDDEN_SEGMENTS = frozenset({"__proto__", "constructor", "prototype"})
_MAX_PATH_LENGTH = 256


def selectors(tag_id: str) -> list[str]:
    """The dotted paths tried for a merge tag id, in order (``a_b_c`` -> three selectors)."""
    parts = tag_id.split("_")
    tried: list[str] = []
    for index in range(len(parts)):
        dotted = ".".join(parts[:index])
        underscored = "_".join(parts[index:])
        selector = ".".join(p for p in (dotted, underscored) if p != "")
        if selector and selector not in tried:
            tried.append(selector)
    return tried


def _segment_allowed(segment: str) -> bool:
    return bool(segment) and segment not in _FORBIDDEN_SEGMENTS and not segment.startswith("_")


def lookup(data: Mapping[str, Any], selector: str) -> Any:
    """The value at a dotted path of own keys, or ``None`` (also for refused segments)."""
    current: Any = data
    for segment in selector.split("."):
        if not _segment_allowed(segment):
            return None
        if isinstance(current, Mapping):
            if segment not in current:
                return None
            current = current[segment]
        elif isinstance(current, Sequence) and not isinstance(current, (str, bytes)):
            # An array index as JavaScript names one: ASCII digits ("²" or an Arabic-Indic digit
            # is a digit to str.isdigit(), and int() takes the latter), no leading zero
            # ("01" is a property no array has).
            if not (segment.isascii() and segment.isdigit()) or (
                len(segment) > 1 and segment[0] == "0"
            ):
                return None
            index = int(segment)
            if index >= len(current):
                return None
            current = current[index]
        else:
            return None
    return current


def _is_empty(value: Any) -> bool:
    # Mirrors JavaScript truthiness of the SDK's `find(selector => get(profile, selector))`.
    # 0 and NaN are falsy there (NaN can reach here in data not read from the API).
    return value is None or value is False or value == "" or (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and (value == 0 or value != value)
    )


def merge_tag_value(data: Mapping[str, Any] | None, tag_id: str) -> Scalar | None:
    """The scalar a merge tag resolves to, or ``None`` when the fallback should be used."""
    if not data or not isinstance(tag_id, str) or len(tag_id) > _MAX_PATH_LENGTH:
        return None
    for selector in selectors(tag_id.strip()):
        value = lookup(data, selector)
        if _is_empty(value):
            continue
        if isinstance(value, (str, bool, int, float)):
            return value
        return None  # the first non-empty value is an object or a list: it does not render
    return None


def encodable(text: str) -> str:
    """``text``, with each lone surrogate replaced by U+FFFD, as a browser shows it.

    JSON may carry one (``"\\ud800"``, which ``JSON.stringify`` writes for a broken string), and
    Python decodes it into a ``str`` that cannot be encoded as UTF-8: a response holding it
    fails as a whole. A surrogate pair that was not joined becomes its character.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


# Integers up to this size are exact in a double, and print the same in both languages.
_EXACT_INTEGER = 2**53


def js_number(value: float) -> str:
    """``value`` as JavaScript's ``String(number)`` prints it (ECMA-262 Number::toString).

    The digits are the shortest that round-trip, which is what ``repr`` gives too; only where
    they go differs: plain decimals from 1e-6 up to below 1e21 (``0.00001``,
    ``150000000000000000000``), an exponent outside (``1e-7``, ``1e+21``, ``1.5e+300``).
    """
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # -0 as well
    sign = "-" if value < 0 else ""
    mantissa, _, exp = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = (whole + fraction).lstrip("0")
    significant = digits.rstrip("0")
    # value == significant * 10 ** (point - len(significant)): ``point`` digits before the dot
    point = (int(exp) if exp else 0) - len(fraction) + len(digits)
    count = len(significant)
    if count <= point <= 21:
        text = significant + "0" * (point - count)
    elif 0 < point <= 21:
        text = significant[:point] + "." + significant[point:]
    elif -6 < point <= 0:
        text = "0." + "0" * -point + significant
    else:
        exponent = point - 1
        head = significant if count == 1 else significant[0] + "." + significant[1:]
        text = f"{head}e{'+' if exponent >= 0 else '-'}{abs(exponent)}"
    return sign + text


def format_scalar(value: Scalar) -> str:
    """Text of a scalar as the browser SDK's ``${value}`` prints it (``true``, ``3``, ``2.5``,
    ``1e-7``, ``1e+21``; an integer past 2**53 as JavaScript's number for it: ``1e+22``)."""
    if isinstance(value, str):
        return encodable(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -_EXACT_INTEGER <= value <= _EXACT_INTEGER:
            return str(value)
        try:
            return js_number(float(value))  # what JSON.parse makes of it
        except OverflowError:
            return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and -_EXACT_INTEGER <= value <= _EXACT_INTEGER:
        return str(int(value))
    return js_number(value)


def render_merge_tag(data: Mapping[str, Any] | None, tag_id: str, fallback: str = "") -> str:
    """The text of a merge tag, or ``fallback`` when the value is empty, missing or not scalar."""
    value = merge_tag_value(data, tag_id)
    return fallback if value is None else format_scalar(value)


__all__ = [
    "encodable",
    "format_scalar",
    "js_number",
    "lookup",
    "merge_tag_value",
    "render_merge_tag",
    "selectors",
]
