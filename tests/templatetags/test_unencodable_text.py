"""A lone surrogate in the API's JSON (``"\\ud800"``: valid JSON, what ``JSON.stringify`` writes
for a broken string) cannot be encoded as UTF-8; rendered as it is, the whole response fails.
The tags render it as U+FFFD, the replacement character a browser shows for it."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
import requests
from django.template import Context, Template
from django.test import Client, RequestFactory

from django_experience.api.events import identify_event
from django_experience.api.types import ProfileResult
from django_experience.conf import conf
from django_experience.emulator.handle import EmulatorHandle
from django_experience.merge_tags import encodable, format_scalar, render_merge_tag
from django_experience.personalization import Personalization
from django_experience.templatetags import experience as experience_tags
from tests.templatetags import views
from tests.templatetags.test_tags_in_requests import CONFIG, _experience, _variable

from .fakes import FakeExperience, variable_change

pytestmark = pytest.mark.django_db

LONE = "\ud800"


@pytest.fixture
def sources() -> Iterator[dict[str, str]]:
    yield views.SOURCES
    views.SOURCES.clear()


def _set_trait_as_a_browser_would(emulator: EmulatorHandle, profile_id: str, name: str) -> None:
    """An identify whose trait holds a lone surrogate, as the browser SDK puts it on the wire."""
    event = identify_event("u1", {name: "PLACEHOLDER"})
    body = json.dumps({"events": [event]}).replace("PLACEHOLDER", "x\\ud800y")
    url = (
        f"{emulator.url}/v2/organizations/{conf.ORGANIZATION_ID}/environments/main"
        f"/profiles/{profile_id}"
    )
    answer = requests.post(url, data=body, headers={"Content-Type": "text/plain"}, timeout=5)
    assert answer.status_code == 200


def test_a_trait_with_a_lone_surrogate_renders_instead_of_failing_the_page(
    experience_emulator: EmulatorHandle, sources: dict[str, str]
) -> None:
    experience_emulator.configure(CONFIG)
    sources["trait"] = (
        '{% merge_tag "traits.firstname" fallback="there" %}|'
        '{% merge_tag "traits.firstname" fallback="there" as name %}{{ name }}|'
        "{{ experience.profile.traits.firstname }}|"
        "{% experience_json %}"
    )
    client = Client(raise_request_exception=True)
    assert client.get("/tags/source/trait/").content.startswith(b"there|there||")
    _set_trait_as_a_browser_would(
        experience_emulator, client.cookies[conf.COOKIE_NAME].value, "firstname"
    )
    response = client.get("/tags/source/trait/")
    assert response.status_code == 200
    text = response.content.decode("utf-8")
    # Replaced when the answer is decoded: a template reading the profile directly too.
    assert text.startswith("x\ufffdy|x\ufffdy|x\ufffdy|")
    assert '"firstname": "x\\ufffdy"' in text


def test_a_change_with_a_lone_surrogate_renders_instead_of_failing_the_page(
    experience_emulator: EmulatorHandle, sources: dict[str, str]
) -> None:
    broken = _experience(
        "exp-cta",
        [_variable("ctaColor", "blue", "or" + LONE), _variable("copy", {}, {"t": LONE})],
    )
    others = [e for e in CONFIG["experiences"] if e["id"] != "exp-cta"]
    experience_emulator.configure({**CONFIG, "experiences": [broken, *others]})
    sources["change"] = (
        '{% experience_change "ctaColor" default="blue" %}|'
        '{% experience_change "ctaColor" default="blue" as c %}{{ c }}|'
        '{% experience_change "copy" %}'
    )
    response = Client(raise_request_exception=True).get("/tags/source/change/")
    assert response.status_code == 200
    assert response.content.decode("utf-8") == (
        "or\ufffd|or\ufffd|{&quot;t&quot;: &quot;\ufffd&quot;}"
    )


def test_the_tags_keep_safe_text_safe_and_plain_text_escaped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeExperience(
        changes=(variable_change("label", "<b>" + LONE + "</b>"),),
        traits={"firstname": LONE + "&"},
    )
    monkeypatch.setattr(experience_tags, "get_experience", lambda request: fake)
    source = (
        '{% load experience %}{% experience_change "label" %}|'
        '{% merge_tag "traits.firstname" %}|{% merge_tag "traits.nickname" fallback=fb %}'
    )
    context = Context({"request": RequestFactory().get("/"), "fb": "é" + LONE})
    out = Template(source).render(context)
    assert out == "&lt;b&gt;\ufffd&lt;/b&gt;|\ufffd&amp;|é\ufffd"
    out.encode("utf-8")


def test_request_experience_merge_tag_gives_encodable_text() -> None:
    result = ProfileResult.from_json(
        {
            "profile": {"id": "p", "traits": {"a": LONE, "b": "\ud83d\ude00"}, "audiences": []},
            "experiences": [],
            "changes": [],
        }
    )

    class Source:
        def resolve(self) -> ProfileResult:
            return result

    experience = Personalization(Source())  # type: ignore[arg-type]
    assert experience.merge_tag("traits.a", "fb") == "\ufffd"
    assert experience.merge_tag("traits.b", "fb") == "\U0001f600"  # an unjoined pair: joined
    assert render_merge_tag({"traits": {"a": LONE}}, "traits.a") == "\ufffd"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("wörld ✓ \U0001f600", "wörld ✓ \U0001f600"),
        (LONE, "\ufffd"),
        ("a\udfffb" + LONE, "a\ufffdb\ufffd"),
    ],
)
def test_encodable(text: str, expected: str) -> None:
    assert encodable(text) == expected
    assert format_scalar(text) == expected
    expected.encode("utf-8")


def test_text_that_needs_nothing_is_returned_as_it_is() -> None:
    text = "wörld " * 10
    same: Callable[[str], str] = encodable
    assert same(text) is text
