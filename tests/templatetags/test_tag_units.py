"""Tag parsing and rendering rules, with an in-memory experience object.

The end-to-end behaviour (real middleware, real emulator) is in ``test_tags_in_requests.py``;
these tests pin down the rules that need exact control over what the experience answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from django.template import Context, Template, TemplateSyntaxError
from django.test import RequestFactory

from django_experience.api.types import Change
from django_experience.templatetags import experience as experience_tags

from .fakes import BrokenExperience, FakeExperience, selected, variable_change

Render = Callable[..., str]


@pytest.fixture
def render(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], Render]:
    """Render a template string in a request whose experience is the given object."""

    def using(experience: Any) -> Render:
        monkeypatch.setattr(experience_tags, "get_experience", lambda request: experience)
        request = RequestFactory().get("/")

        def render_source(source: str, **context: Any) -> str:
            template = Template("{% load experience %}" + source)
            return template.render(Context({"request": request, **context}))

        return render_source

    return using


HERO = '{% personalize "hero" %}base{% variant "hero-a" %}A{% variant 2 %}B{% endpersonalize %}'


@pytest.mark.parametrize(
    ("selection", "expected", "viewed"),
    [
        (None, "base", []),
        (selected("hero", "hero", 0), "base", [("hero", "exp-1", 0, "Entry")]),
        (selected("hero", "hero-a", 1), "A", [("hero-a", "exp-1", 1, "Entry")]),
        (selected("hero", "hero-b", 2), "B", [("hero-b", "exp-1", 2, "Entry")]),
        # Selected variant without a branch: baseline, and no view of a variant not shown.
        (selected("hero", "hero-c", 3), "base", []),
        # Hidden variant: nothing at all, but the visitor did get that variant.
        (selected("hero", "", 1), "", [("hero", "exp-1", 1, "Entry")]),
    ],
)
def test_personalize_chooses_the_branch_of_the_selected_variant(
    render: Callable[[Any], Render],
    selection: Any,
    expected: str,
    viewed: list[tuple[str, str, int, str]],
) -> None:
    fake = FakeExperience(selections={"hero": selection} if selection else {})
    assert render(fake)(HERO) == expected
    assert fake.viewed == viewed


def test_personalize_is_baseline_when_degraded(render: Callable[[Any], Render]) -> None:
    fake = FakeExperience(selections={"hero": selected("hero", "hero-a", 1)}, degraded=True)
    assert render(fake)(HERO) == "base"
    assert fake.viewed == []


def test_variant_names_from_variables_integers_are_indexes_strings_are_ids(
    render: Callable[[Any], Render],
) -> None:
    fake = FakeExperience(selections={"hero": selected("hero", "2", 1)})
    source = (
        "{% personalize baseline %}base{% variant by_index %}index"
        "{% variant by_id %}id{% endpersonalize %}"
    )
    rendered = render(fake)
    assert rendered(source, baseline="hero", by_index=2, by_id="2") == "id"
    assert rendered(source, baseline="hero", by_index=1, by_id="x") == "index"
    assert rendered(source, baseline="hero", by_index=True, by_id="") == "base"
    assert rendered(source, baseline="", by_index=1, by_id="2") == "base"


def test_unknown_variables_are_baseline_and_default(render: Callable[[Any], Render]) -> None:
    rendered = render(FakeExperience())
    assert rendered(HERO.replace('"hero"', "missing", 1)) == "base"
    assert rendered("{% experience_entry missing %}|{% merge_tag missing fallback='f' %}") == "|f"


def test_experience_entry_forms(render: Callable[[Any], Render]) -> None:
    fake = FakeExperience(selections={"hero": selected("hero", "hero-a", 1)})
    rendered = render(fake)
    assert rendered('{% experience_entry "hero" %}') == "hero-a"
    assert rendered('{% experience_entry "other" %}') == "other"
    assert rendered("{% experience_entry id as entry %}[{{ entry }}]", id="hero") == "[hero-a]"


def test_experience_change_renders_values_and_reports_every_rendered_use(
    render: Callable[[Any], Render],
) -> None:
    fake = FakeExperience(changes=(variable_change("cta", {"color": "orange"}, "exp-cta", 1),))
    rendered = render(fake)
    assert rendered('{% experience_change "cta" as cta %}{{ cta.color }}') == "orange"
    assert rendered('{% experience_change "cta" %}') == "{&quot;color&quot;: &quot;orange&quot;}"
    assert rendered('{% experience_change "none" default="blue" %}') == "blue"
    assert rendered('{% experience_change "none" %}') == ""
    # The fake does not dedupe (the real object does); the tag reports each rendered use.
    assert fake.viewed == [("cta", "exp-cta", 1, "Variable")] * 2


def test_merge_tag_refuses_private_paths(render: Callable[[Any], Render]) -> None:
    fake = FakeExperience(traits={"_secret": "s", "name": "Ann"})
    rendered = render(fake)
    assert rendered('{% merge_tag "traits.name" %}') == "Ann"
    assert rendered('{% merge_tag "traits._secret" fallback="no" %}') == "no"
    assert rendered('{% merge_tag "_secret" fallback="no" %}') == "no"
    assert rendered('{% merge_tag "traits.__class__" fallback="no" %}') == "no"


def test_a_broken_experience_renders_baseline_and_logs_once(
    render: Callable[[Any], Render], caplog: pytest.LogCaptureFixture
) -> None:
    source = (
        HERO + '|{% experience_entry "hero" %}|{% experience_change "k" default="d" %}'
        '|{% merge_tag "traits.x" fallback="f" %}|{% experience_json %}'
    )
    with caplog.at_level(logging.WARNING, logger="django_experience.templatetags"):
        output = render(BrokenExperience())(source)
    assert output == (
        'base|hero|d|f|<script id="experience-data" type="application/json">'
        '{"profile": null, "experiences": [], "changes": []}</script>'
    )
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "secret-trait-value" not in caplog.text


def test_a_failing_component_view_still_renders_the_variant(
    render: Callable[[Any], Render],
) -> None:
    class FailingViews(FakeExperience):
        def component_viewed(self, *args: Any, **kwargs: Any) -> None:
            raise RuntimeError("delivery exploded")

    fake = FailingViews(selections={"hero": selected("hero", "hero-a", 1)})
    assert render(fake)(HERO) == "A"


def test_failure_is_logged_once_per_render_without_a_request(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(experience_tags, "get_experience", lambda request: BrokenExperience())
    template = Template('{% load experience %}{% experience_entry "a" %}{% experience_entry "b" %}')
    with caplog.at_level(logging.WARNING, logger="django_experience.templatetags"):
        assert template.render(Context()) == "ab"
        assert template.render(Context()) == "ab"
    assert len([r for r in caplog.records if r.levelno >= logging.WARNING]) == 2


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{% personalize %}x{% endpersonalize %}", "exactly one argument"),
        ('{% personalize "a" "b" %}x{% endpersonalize %}', "exactly one argument"),
        ('{% personalize "a" %}x{% variant %}y{% endpersonalize %}', "variant"),
        ('{% personalize "a" %}x{% variant 1 2 %}y{% endpersonalize %}', "variant"),
        ('{% personalize "a" %}x', "endpersonalize"),
        ("{% experience_entry %}", "one argument"),
        ('{% experience_entry "a" as %}', "as <variable name>"),
        ('{% experience_entry "a" as x y %}', "as <variable name>"),
        ("{% experience_change %}", "key"),
        ('{% experience_change "k" fallback="x" %}', "unknown option"),
        ('{% experience_change "k" "x" %}', "unexpected argument"),
        ('{% experience_change "k" default=1 default=2 %}', "twice"),
        ('{% merge_tag "p" default="x" %}', "unknown option"),
        ("{% merge_tag %}", "profile path"),
        ('{% experience_json "a" "b" %}', "at most one argument"),
    ],
)
def test_syntax_errors_name_the_tag_and_the_problem(source: str, message: str) -> None:
    with pytest.raises(TemplateSyntaxError, match=message):
        Template("{% load experience %}" + source)


def test_personalize_exposes_its_nodes_to_template_introspection() -> None:
    template = Template(
        '{% load experience %}{% personalize "a" %}{{ x }}{% variant 1 %}{{ y }}'
        "{% endpersonalize %}"
    )
    from django.template.base import VariableNode

    nodes = template.nodelist.get_nodes_by_type(VariableNode)
    assert [str(node.filter_expression) for node in nodes if isinstance(node, VariableNode)] == [
        "x",
        "y",
    ]


def test_scalar_changes_print_like_the_browser_sdk(render: Callable[[Any], Render]) -> None:
    fake = FakeExperience(
        changes=(
            variable_change("flag", True),
            variable_change("price", 3.0),
            variable_change("label", "<i>x</i>"),
        )
    )
    rendered = render(fake)
    source = '{% experience_change "flag" %}|{% experience_change "price" %}|'
    assert rendered(source + '{% experience_change "label" %}') == "true|3|&lt;i&gt;x&lt;/i&gt;"
    assert rendered('{% experience_change "flag" as f %}{% if f %}on{% endif %}') == "on"


def test_options_take_strings_with_spaces_filters_and_translations(
    render: Callable[[Any], Render],
) -> None:
    rendered = render(FakeExperience())
    source = (
        '{% experience_change "none" default="Shop the collection" %}|'
        '{% merge_tag "traits.name" fallback=_("dear visitor") %}|'
        "{% merge_tag 'traits.name' fallback=who|upper %}"
    )
    assert rendered(source, who="guest") == "Shop the collection|dear visitor|GUEST"


class Unprintable:
    """A value whose text cannot be made."""

    def __str__(self) -> str:
        raise RuntimeError("no text for this one")


def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_a_value_that_cannot_be_written_out_falls_back_and_records_no_view(
    render: Callable[[Any], Render], caplog: pytest.LogCaptureFixture
) -> None:
    deep = _nested(5000)  # json.dumps raises RecursionError on any stack
    fake = FakeExperience(
        changes=(variable_change("deep", deep, "exp-deep"), variable_change("odd", Unprintable())),
        selections={"hero": selected("hero", Unprintable(), 1)},  # type: ignore[arg-type]
        traits={"name": Unprintable()},
    )
    rendered = render(fake)
    with caplog.at_level(logging.WARNING, logger="django_experience.templatetags"):
        assert rendered('{% experience_change "deep" default="blue" %}') == "blue"
        assert rendered('{% experience_change "odd" default="blue" %}') == "blue"
        assert rendered('{% experience_entry "hero" %}') == "hero"
        assert rendered('{% merge_tag "traits.name" fallback="there" %}') == "there"
        assert rendered("{% experience_entry unprintable %}", unprintable=Unprintable()) == ""
    assert fake.viewed == []  # the visitor saw the default and the baseline
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "RecursionError" in warnings[0].getMessage()  # once a request
    assert "no text for this one" not in caplog.text
    # Kept in a variable, the value is not written out here: the variant was used.
    assert rendered('{% experience_change "deep" as d %}{{ d.k.k.k.k|length }}') == "1"
    assert fake.viewed == [("deep", "exp-deep", 1, "Variable")]


@pytest.mark.parametrize(
    "meta",
    [
        {"experienceId": "exp-cta"},  # no variantIndex
        {"experienceId": "exp-cta", "variantIndex": None},
        {"experienceId": "exp-cta", "variantIndex": "1"},
        {"experienceId": "exp-cta", "variantIndex": True},
        {"experienceId": "exp-cta", "variantIndex": -1},
    ],
)
def test_a_change_of_an_unknown_variant_renders_but_records_no_view(
    render: Callable[[Any], Render], meta: dict[str, Any]
) -> None:
    raw = {"key": "cta", "type": "Variable", "value": "orange", "meta": meta}
    change = Change(key="cta", type="Variable", value="orange", meta=meta, raw=raw)
    fake = FakeExperience(changes=(change,))
    assert render(fake)('{% experience_change "cta" default="blue" %}') == "orange"
    assert fake.viewed == []  # a view of variant 0 would pin the visitor to the baseline
    fake = FakeExperience(changes=(variable_change("cta", "blue", "exp-cta", 0),))
    assert render(fake)('{% experience_change "cta" default="blue" %}') == "blue"
    assert fake.viewed == [("cta", "exp-cta", 0, "Variable")]  # a known baseline is a view
