"""Fuzzed cookies, query strings and headers: never a 500, never an invalid id sent."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_experience.emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

VALID_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
header_text = st.text(
    # WSGI headers arrive as latin-1 text.
    alphabet=st.characters(min_codepoint=32, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=80,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    cookie=header_text,
    query=st.text(max_size=60),
    country=header_text,
    city=header_text,
    user_agent=header_text,
    referrer=header_text,
    sec_purpose=st.sampled_from(["", "prefetch", "prefetch;prerender", "x"]),
)
def test_fuzzed_requests_never_fail(
    emulator: EmulatorHandle,
    cookie: str,
    query: str,
    country: str,
    city: str,
    user_agent: str,
    referrer: str,
    sec_purpose: str,
) -> None:
    emulator.reset()
    emulator.configure({"audiences": [], "experiences": []})
    client = Client()
    client.cookies["ntaid"] = cookie
    client.cookies["ctfl-opt-aid"] = cookie[::-1]
    headers: dict[str, Any] = {
        "HTTP_CF_IPCOUNTRY": country,
        "HTTP_CF_IPCITY": city,
        "HTTP_X_VERCEL_IP_CITY": city,
        "HTTP_USER_AGENT": user_agent,
        "HTTP_REFERER": referrer,
        "HTTP_SEC_PURPOSE": sec_purpose,
    }
    response = client.get("/mw/page/", {"q": query, "utm_campaign": query}, **headers)
    assert response.status_code == 200
    for profile in emulator.profiles():
        assert VALID_ID.fullmatch(profile["id"])
    if "ntaid" in response.cookies and response.cookies["ntaid"].value:
        assert VALID_ID.fullmatch(response.cookies["ntaid"].value)
