"""The cookie's ``expires`` is what ``set_cookie(max_age=...)`` writes, formatted once a second."""

from __future__ import annotations

import time

import pytest
from django.http import HttpResponse

from django_experience import visitor


def _written(max_age: int, expires: str | None = None) -> str:
    response = HttpResponse()
    response.set_cookie("ntaid", "p1", max_age=max_age, expires=expires, samesite="Lax")
    return response.cookies.output()


@pytest.mark.parametrize("now", [1_700_000_000.0, 1_700_000_000.25, 1_700_000_000.999, 86399.5])
@pytest.mark.parametrize("max_age", [0, 1, 3600, 365 * 24 * 60 * 60])
def test_the_header_is_what_set_cookie_writes(
    monkeypatch: pytest.MonkeyPatch, now: float, max_age: int
) -> None:
    monkeypatch.setattr(visitor, "_expires_at", (-1, ""))
    monkeypatch.setattr(time, "time", lambda: now)
    assert _written(max_age, visitor.cookie_expires(max_age)) == _written(max_age)
    assert _written(max_age, visitor.cookie_expires(max_age)) == _written(max_age)  # remembered


def test_a_new_second_is_formatted_anew(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000.5]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    first = visitor.cookie_expires(60)
    clock[0] += 1
    second = visitor.cookie_expires(60)
    assert first != second and second == _written(60).split("expires=")[1].split(";")[0]
