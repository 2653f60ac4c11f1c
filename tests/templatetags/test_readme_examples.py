"""The README's template tag examples, rendered as written in requests through the middleware.

Each example here is copied from README.md and checked to still be there word for word, so the
README cannot drift from what these tests render. The templates are rendered against the
emulator, configured with the ids the README uses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from django.http import HttpRequest, HttpResponse
from django.template import engines
from django.test import Client
from django.urls import path

from django_experience.conf import conf
from django_experience.emulator.handle import EmulatorHandle
from django_experience.personalization import get_experience

pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]

README = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")

# --- the examples, as the README writes them ----------------------------------------------

PERSONALIZE = """\
{% personalize "hero-default" %}
  <h1>Welcome</h1>                     {# baseline #}
{% variant "hero-gold" %}
  <h1>Welcome back, gold member</h1>   {# by variant entry id #}
{% variant 2 %}
  <h1>Spring sale</h1>                 {# by index: 1 = first variant, 2 = second, ... #}
{% endpersonalize %}"""

PERSONALIZE_VARIABLES = """\
{% personalize hero_id %}
  <h1>Welcome</h1>
{% variant gold_hero_id %}
  <h1>Welcome back, gold member</h1>
{% variant sale_index %}
  <h1>Spring sale</h1>
{% endpersonalize %}"""
PERSONALIZE_CONTEXT = '{"hero_id": "hero-default", "gold_hero_id": "hero-gold", "sale_index": 2}'

ENTRY_AS = '{% experience_entry "hero-default" as hero_id %}'
ENTRY_WRITTEN_OUT = """\
<section data-entry-id="{% experience_entry "hero-default" %}">   {# without as: written out #}
<section data-entry-id="{% experience_entry baseline_id %}">      {# baseline id from a variable #}
"""

CHANGE = """\
<a class="button button-{% experience_change "ctaColor" default="blue" %}">Buy</a>

{% experience_change "heroCopy" default=None as copy %}
{% if copy %}<h2>{{ copy.title }}</h2>{% endif %}

<a class="button button-{% experience_change cta_key default=cta_default %}">Buy</a>"""

MERGE = """\
Hi {% merge_tag "traits.firstname" fallback="there" %}!
Hi {% merge_tag "traits_firstname" fallback="there" %}!     {# underscore form, same value #}
{% merge_tag "location.city" fallback="your city" as city %}
{% merge_tag trait_path fallback=greeting_fallback %}       {# path and fallback from variables #}
"""

JSON_TAGS = """\
{% experience_json %}               {# <script id="experience-data" type="application/json"> #}
{% experience_json "my-element-id" %}"""

PROCESSOR = "{{ experience.profile.traits.plan }}"
PROCESSOR_DEGRADED = "{% if experience.degraded %}...{% endif %}"

EXAMPLES: dict[str, str] = {
    "personalize": PERSONALIZE,
    "personalize-variables": PERSONALIZE_VARIABLES,
    "entry-as": ENTRY_AS + "[{{ hero_id }}]",
    "entry-written-out": ENTRY_WRITTEN_OUT,
    "change": CHANGE,
    "merge": MERGE + "[{{ city }}]",
    "json": JSON_TAGS,
    "processor": PROCESSOR + "|" + PROCESSOR_DEGRADED,
}
README_TEXT: dict[str, str] = {
    "personalize": PERSONALIZE,
    "personalize-variables": PERSONALIZE_VARIABLES,
    "entry-as": ENTRY_AS,
    "entry-written-out": ENTRY_WRITTEN_OUT,
    "change": CHANGE,
    "merge": MERGE,
    "json": JSON_TAGS,
    "processor": PROCESSOR,
}


# --- a view that renders them, and its URL ------------------------------------------------


def render_example(request: HttpRequest, name: str) -> HttpResponse:
    """Render ``EXAMPLES[name]`` with the JSON ``context`` of the query string.

    With ``traits`` in the query string, the visitor is identified with them first.
    """
    if "traits" in request.GET:
        get_experience(request).identify("reader-1", json.loads(request.GET["traits"]))
    context = json.loads(request.GET.get("context", "{}"))
    template = engines["django"].from_string("{% load experience %}" + EXAMPLES[name])
    return HttpResponse(template.render(context, request))


urlpatterns = [path("readme/<slug:name>/", render_example)]


# --- the emulator, with the README's ids --------------------------------------------------


def _distribution(index: int) -> list[dict[str, Any]]:
    """Every visitor in variant ``index`` (0 = baseline)."""
    ranges = [{"index": i, "start": 0, "end": 0} for i in range(index)]
    return [*ranges, {"index": index, "start": 0, "end": 1}]


def _config(hero_variant: int) -> dict[str, Any]:
    def experience(experience_id: str, variant: int, component: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": experience_id,
            "name": experience_id,
            "type": "nt_personalization",
            "trafficAllocation": 1,
            "sticky": False,
            "distribution": _distribution(variant),
            "components": [component],
        }

    hero = {
        "type": "EntryReplacement",
        "baseline": {"id": "hero-default"},
        "variants": [{"id": "hero-gold", "hidden": False}, {"id": "hero-spring", "hidden": False}],
    }
    copy = {
        "type": "InlineVariable",
        "key": "heroCopy",
        "baseline": {"value": {"title": "Welcome"}},
        "variants": [{"value": {"title": "Spring sale"}}],
    }
    color = {
        "type": "InlineVariable",
        "key": "ctaColor",
        "baseline": {"value": "blue"},
        "variants": [{"value": "orange"}],
    }
    return {
        "audiences": [],
        "experiences": [
            experience("exp-hero", hero_variant, hero),
            experience("exp-copy", 1, copy),
            experience("exp-cta", 1, color),
        ],
    }


@pytest.fixture
def emulator(experience_emulator: EmulatorHandle) -> EmulatorHandle:
    experience_emulator.configure(_config(hero_variant=1))
    return experience_emulator


def _get(client: Client, name: str, context: str = "{}", **query: str) -> str:
    """The example ``name`` rendered in a request, whitespace collapsed."""
    assert README_TEXT[name] in README, f"the README no longer shows this:\n{README_TEXT[name]}"
    response = client.get(f"/readme/{name}/", {"context": context, **query})
    assert response.status_code == 200
    return " ".join(response.content.decode().split())


# --- the examples render as the README says -----------------------------------------------


@pytest.mark.parametrize(
    ("variant", "heading"),
    [(0, "Welcome"), (1, "Welcome back, gold member"), (2, "Spring sale")],
)
def test_personalize_literal_ids_and_index(
    emulator: EmulatorHandle, client: Client, variant: int, heading: str
) -> None:
    emulator.configure(_config(hero_variant=variant))
    assert _get(client, "personalize") == f"<h1>{heading}</h1>"


@pytest.mark.parametrize(
    ("variant", "heading"),
    [(0, "Welcome"), (1, "Welcome back, gold member"), (2, "Spring sale")],
)
def test_personalize_ids_and_index_from_variables(
    emulator: EmulatorHandle, client: Client, variant: int, heading: str
) -> None:
    assert PERSONALIZE_CONTEXT in README
    emulator.configure(_config(hero_variant=variant))
    rendered = _get(client, "personalize-variables", PERSONALIZE_CONTEXT)
    assert rendered == f"<h1>{heading}</h1>"


def test_a_string_in_a_variable_names_an_entry_not_an_index(
    emulator: EmulatorHandle, client: Client
) -> None:
    emulator.configure(_config(hero_variant=2))
    context = PERSONALIZE_CONTEXT.replace('"sale_index": 2', '"sale_index": "2"')
    # No branch names the second variant now: the visitor sees the baseline.
    assert _get(client, "personalize-variables", context) == "<h1>Welcome</h1>"


def test_experience_entry_with_as_and_written_out(emulator: EmulatorHandle, client: Client) -> None:
    assert _get(client, "entry-as") == "[hero-gold]"
    rendered = _get(client, "entry-written-out", '{"baseline_id": "hero-default"}')
    assert rendered == '<section data-entry-id="hero-gold"> <section data-entry-id="hero-gold">'


def test_experience_entry_without_a_selection_writes_the_baseline_id(
    emulator: EmulatorHandle, client: Client
) -> None:
    rendered = _get(client, "entry-written-out", '{"baseline_id": "nobody-personalizes-this"}')
    assert rendered == (
        '<section data-entry-id="hero-gold"> <section data-entry-id="nobody-personalizes-this">'
    )


def test_experience_change_literal_object_and_variables(
    emulator: EmulatorHandle, client: Client
) -> None:
    rendered = _get(client, "change", '{"cta_key": "ctaColor", "cta_default": "blue"}')
    assert rendered == (
        '<a class="button button-orange">Buy</a> <h2>Spring sale</h2> '
        '<a class="button button-orange">Buy</a>'
    )
    # A key no experience changes gives the default, from its variable too.
    rendered = _get(client, "change", '{"cta_key": "ctaShape", "cta_default": "grey"}')
    assert rendered.endswith('<a class="button button-grey">Buy</a>')


def test_merge_tags_dotted_underscore_and_variables(
    emulator: EmulatorHandle, client: Client
) -> None:
    context = '{"trait_path": "traits.firstname", "greeting_fallback": "friend"}'
    identified = _get(client, "merge", context, traits='{"firstname": "Ada"}')
    # The location is unknown here: the `as city` example holds its fallback.
    assert identified == "Hi Ada! Hi Ada! Ada [your city]"


def test_merge_tags_fall_back_for_an_anonymous_visitor(
    emulator: EmulatorHandle, client: Client
) -> None:
    context = '{"trait_path": "traits.firstname", "greeting_fallback": "friend"}'
    assert _get(client, "merge", context) == "Hi there! Hi there! friend [your city]"


JSON_BLOCK = re.compile(r'<script id="([^"]+)" type="application/json">(.*?)</script>')


def test_experience_json_has_the_shape_the_readme_describes(
    emulator: EmulatorHandle, client: Client
) -> None:
    html = _get(client, "json")
    blocks = {element_id: json.loads(text) for element_id, text in JSON_BLOCK.findall(html)}
    assert set(blocks) == {"experience-data", "my-element-id"}
    data = blocks["experience-data"]
    assert data == blocks["my-element-id"]
    assert set(data) == {"profile", "experiences", "changes"}
    # The page's script gives the browser SDK this id: the one in the cookie.
    assert data["profile"]["id"] == client.cookies[conf.COOKIE_NAME].value
    assert {"id", "traits", "audiences", "location", "session"} <= set(data["profile"])
    hero = next(e for e in data["experiences"] if e["experienceId"] == "exp-hero")
    assert hero["variantIndex"] == 1
    assert hero["variants"] == {"hero-default": "hero-gold"}
    color = next(c for c in data["changes"] if c["key"] == "ctaColor")
    assert color["value"] == "orange"
    assert "type" in color
    assert color["meta"] == {"experienceId": "exp-cta", "variantIndex": 1}


def test_experience_json_without_personalization(emulator: EmulatorHandle, client: Client) -> None:
    emulator.faults(error_rate=1.0, error_status=500)
    html = _get(client, "json")
    blocks = {element_id: json.loads(text) for element_id, text in JSON_BLOCK.findall(html)}
    assert blocks["experience-data"] == {"profile": None, "experiences": [], "changes": []}


@pytest.mark.parametrize("track", [None, True], ids=["preflight-default", "turned-on"])
def test_preflight_mode_sends_component_views_only_when_turned_on(
    emulator: EmulatorHandle, client: Client, settings: Any, track: bool | None
) -> None:
    """The README's advice for pages where the browser SDK sends the page events."""
    settings.EXPERIENCE_MODE = "preflight"
    settings.EXPERIENCE_STICKY_EXPERIENCES = ["exp-hero"]
    if track is not None:
        settings.EXPERIENCE_TRACK_COMPONENT_VIEWS = track
    assert _get(client, "personalize") == "<h1>Welcome back, gold member</h1>"
    stored = emulator.profile(client.cookies[conf.COOKIE_NAME].value)
    # Preflight stores nothing itself: the profile exists only when component views were sent.
    assert (stored is not None) is bool(track)
    profile = stored or {"events": []}
    views = [
        (e["componentId"], e["experienceId"], e["variantIndex"])
        for e in profile["events"]
        if e.get("type") == "component"
    ]
    assert views == ([("hero-gold", "exp-hero", 1)] if track else [])
    # Preflight stores no page view: the browser SDK sends that one.
    assert not [e for e in profile["events"] if e.get("type") == "page"]


def no_consent(request: HttpRequest) -> bool:
    return False


def test_experience_json_without_consent_hands_over_no_profile(
    emulator: EmulatorHandle, client: Client, settings: Any
) -> None:
    settings.EXPERIENCE_CONSENT = f"{__name__}.no_consent"
    html = _get(client, "json")
    data = json.loads(dict(JSON_BLOCK.findall(html))["experience-data"])
    # The request's profile is a throw-away one: browser code must not store its id.
    assert data["profile"] is None
    assert isinstance(data["experiences"], list) and isinstance(data["changes"], list)
    assert emulator.profiles()  # the page was personalized, from a throw-away profile
    assert conf.COOKIE_NAME not in client.cookies


def test_context_processor_examples(emulator: EmulatorHandle, client: Client) -> None:
    assert PROCESSOR_DEGRADED in README
    assert _get(client, "processor", traits='{"plan": "pro"}') == "pro|"
    emulator.faults(error_rate=1.0, error_status=500)
    assert _get(client, "processor") == "|..."
