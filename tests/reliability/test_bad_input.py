"""Bad input: fuzzed cookies, query strings, headers and traits never give a 500, and whatever
comes back from the API is escaped in the page (HTML and the JSON hand-off)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_experience.api.events import identify_event
from django_experience.emulator.handle import EmulatorHandle

pytestmark = pytest.mark.django_db

FUZZ = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
# WSGI headers and cookies arrive as latin-1 text.
latin1 = st.text(
    alphabet=st.characters(min_codepoint=32, max_codepoint=0xFF, exclude_characters="\x7f"),
    max_size=60,
)
nasty = st.sampled_from(
    ["<script>alert(1)</script>", "</script><b>", "\"'&<>", "{{ x }}{% now %}", "\u2028\u2029",
     "a" * 300, "../../etc", "%00\x00", "javascript:alert(1)", "<!--"]
)
text = st.one_of(st.text(max_size=40), nasty)
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**53), 2**53),
    st.floats(allow_nan=False, allow_infinity=False), text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(text, children, max_size=3),
    max_leaves=8,
)
traits = st.dictionaries(st.one_of(st.text(min_size=1, max_size=20), nasty), json_values,
                         max_size=5)

JSON_BLOCK = re.compile(
    r'<script id="experience-data" type="application/json">(.*?)</script>', re.S
)


def _line(content: str, name: str) -> str:
    match = re.search(rf"^{name}=\[(.*?)\]/{name}$", content, re.M | re.S)
    assert match is not None, (name, content)
    return match.group(1)


@FUZZ
@given(cookie=latin1, query=st.text(max_size=60), user_agent=latin1, referrer=latin1,
       language=latin1, forwarded=latin1, mode=st.sampled_from(["update", "preflight"]))
def test_fuzzed_requests_never_fail(
    emulator: EmulatorHandle, settings: Any, cookie: str, query: str, user_agent: str,
    referrer: str, language: str, forwarded: str, mode: str,
) -> None:
    settings.EXPERIENCE_MODE = mode
    client = Client()  # re-raises anything a view or middleware lets escape
    client.cookies["ntaid"] = cookie
    client.cookies["ctfl-opt-aid"] = cookie[::-1]
    response = client.get(
        "/page/",
        {"q": query, "utm_campaign": query},
        HTTP_USER_AGENT=user_agent,
        HTTP_REFERER=referrer,
        HTTP_ACCEPT_LANGUAGE=language,
        HTTP_X_FORWARDED_FOR=forwarded,
        HTTP_CF_IPCOUNTRY=language[:2],
        HTTP_CF_IPCITY=forwarded,
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "<" not in _line(content, "q") and ">" not in _line(content, "q")
    (block,) = JSON_BLOCK.findall(content)
    json.loads(block)


@FUZZ
@given(traits=traits, firstname=text)
def test_fuzzed_traits_are_escaped(
    emulator: EmulatorHandle, traits: dict[str, Any], firstname: str
) -> None:
    sent = {**traits, "firstname": firstname}
    result = emulator.client().create_profile([identify_event("fuzzed-user", sent)])
    client = Client()
    client.cookies["ntaid"] = result.profile.id
    response = client.get("/page/")
    assert response.status_code == 200
    content = response.content.decode()
    name = _line(content, "name")
    assert "<" not in name and ">" not in name and '"' not in name
    (block,) = JSON_BLOCK.findall(content)
    assert "<" not in block and ">" not in block  # no way to close the script element
    handed_off = json.loads(block)
    stored = emulator.profile(result.profile.id)
    assert stored is not None and handed_off["profile"]["traits"] == stored["traits"]
    emulator.reset()
    emulator.configure({"audiences": [], "experiences": []})
