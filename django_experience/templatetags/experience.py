"""Template tags for personalized content: ``{% load experience %}``.

Every tag asks ``request.experience`` (through ``get_experience``) and follows the official SDKs'
semantics, so a page renders the same variant whether Django or a browser SDK renders it.

The tags never raise at render time: without the middleware, outside a request (e-mails, cached
fragments) or when the experience object itself fails, they render the baseline, the default or
the fallback, and a failing experience object is logged once per request.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from django import template
from django.http import HttpRequest
from django.template.base import (
    FilterExpression,
    Node,
    NodeList,
    Parser,
    Token,
    render_value_in_context,
)
from django.template.context import Context
from django.utils.html import escape
from django.utils.safestring import SafeData, SafeString, mark_safe

from django_experience.merge_tags import encodable, format_scalar
from django_experience.personalization import get_experience

if TYPE_CHECKING:
    from django_experience.personalization import Personalization, SelectedVariant

register = template.Library()
logger = logging.getLogger("django_experience.templatetags")

#: The id of the ``<script>`` element ``{% experience_json %}`` writes unless told otherwise.
DEFAULT_JSON_ELEMENT_ID = "experience-data"

# What `{% experience_json %}` writes when there is nothing to hand over (shape of `to_json()`).
_EMPTY_JSON: dict[str, Any] = {"profile": None, "experiences": [], "changes": []}

# Marks that a failure was already logged: an attribute of the request, or a key of the render
# context's base level when there is no request. Each failure is logged once, not once per tag.
_FAILURE_LOGGED = "_experience_template_failure_logged"


# --- shared helpers ---------------------------------------------------------------------------


def _request_of(context: Context) -> HttpRequest | None:
    request = getattr(context, "request", None)
    if request is None:
        request = context.get("request")
    return request if isinstance(request, HttpRequest) else None


def _report_failure(context: Context, tag_name: str, exc: BaseException) -> None:
    """Log a failure of the experience object once per request (or per render without one)."""
    request = _request_of(context)
    try:
        if request is not None:
            if getattr(request, _FAILURE_LOGGED, False):
                return
            setattr(request, _FAILURE_LOGGED, True)
        else:
            flags = context.render_context.dicts[0]
            if flags.get(_FAILURE_LOGGED):
                return
            flags[_FAILURE_LOGGED] = "logged"
    except Exception:  # a request that refuses attributes: log every time rather than never
        pass
    # The exception's type only: its message could carry profile data.
    logger.warning(
        "{%% %s %%} could not use the visitor's experience (%s); rendering baseline content",
        tag_name,
        type(exc).__name__,
    )
    logger.debug("experience template tag failure", exc_info=exc)


def _experience_of(context: Context, tag_name: str) -> Personalization:
    try:
        return get_experience(_request_of(context))
    except Exception as exc:
        _report_failure(context, tag_name, exc)
        return get_experience(None)


def _resolve(expression: FilterExpression | None, context: Context, default: Any = None) -> Any:
    if expression is None:
        return default
    return expression.resolve(context)


def _nonempty_str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _is_index(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _split_as(bits: list[str], tag_name: str) -> tuple[list[str], str | None]:
    """``[..., "as", "name"]`` -> the bits before ``as`` and the variable name."""
    if "as" not in bits:
        return bits, None
    position = bits.index("as")
    if position != len(bits) - 2 or not bits[-1].isidentifier():
        raise template.TemplateSyntaxError(
            f"'{tag_name}' expects 'as <variable name>' at its end, got: {' '.join(bits)}"
        )
    return bits[:position], bits[-1]


def _parse_options(
    parser: Parser, bits: list[str], tag_name: str, allowed: tuple[str, ...]
) -> dict[str, FilterExpression]:
    """Parse ``name=value`` options, refusing anything else."""
    options: dict[str, FilterExpression] = {}
    for bit in bits:
        name, sep, value = bit.partition("=")
        if not sep or not value:
            raise template.TemplateSyntaxError(
                f"'{tag_name}' got an unexpected argument {bit!r}; "
                f"it takes one value then {', '.join(o + '=...' for o in allowed)}"
            )
        if name not in allowed:
            raise template.TemplateSyntaxError(
                f"'{tag_name}' got an unknown option {name!r}; allowed: {', '.join(allowed)}"
            )
        if name in options:
            raise template.TemplateSyntaxError(f"'{tag_name}' got {name!r} twice")
        options[name] = parser.compile_filter(value)
    return options


def _render_value(value: Any, context: Context) -> str:
    """Render a value like ``{{ value }}`` (autoescaped); objects as JSON, nothing for None.

    Booleans and numbers print as the browser SDKs print them (``true``, ``3``).
    """
    if value is None:
        return ""
    if isinstance(value, (bool, int, float)):
        value = format_scalar(value)
    if isinstance(value, (Mapping, list, tuple)):
        try:
            value = json.dumps(value, ensure_ascii=False, default=str)
        except (TypeError, ValueError):
            value = str(value)
    text = render_value_in_context(value, context)
    if text.isascii():
        return text
    # A lone surrogate (valid JSON, from a trait or a change) would fail the whole response.
    fixed = encodable(text)
    return mark_safe(fixed) if isinstance(text, SafeData) else fixed


def _emit(context: Context, value: Any, target_var: str | None) -> str:
    if target_var is not None:
        context[target_var] = encodable(value) if isinstance(value, str) else value
        return ""
    return _render_value(value, context)


def _emit_fallback(context: Context, value: Any, target_var: str | None) -> str:
    """``_emit`` of the default, the baseline or the fallback after a failure (already
    reported): never raises; should even that fail, nothing is written."""
    try:
        return _emit(context, value, target_var)
    except Exception:
        logger.debug("experience template tag fallback could not be rendered", exc_info=True)
        return ""


def _record_view(
    context: Context,
    tag_name: str,
    experience: Personalization,
    component_id: str,
    *,
    experience_id: str,
    variant_index: int,
    component_type: str,
) -> None:
    """Record that the visitor saw this variant, so the API can keep sticky variants sticky."""
    try:
        experience.component_viewed(
            component_id,
            experience_id=experience_id,
            variant_index=variant_index,
            component_type=component_type,
        )
    except Exception as exc:
        _report_failure(context, tag_name, exc)


def _record_entry_view(
    context: Context, tag_name: str, experience: Personalization, selected: SelectedVariant
) -> None:
    # The official SDK names the component by the selected entry's id; a hidden variant has
    # none here, so its baseline names it.
    _record_view(
        context,
        tag_name,
        experience,
        selected.entry_id or selected.baseline_id,
        experience_id=selected.experience_id,
        variant_index=selected.variant_index,
        component_type="Entry",
    )


def _selected_variant(
    context: Context, tag_name: str, baseline_id: object
) -> tuple[Personalization, SelectedVariant] | None:
    """The variant the API selected for this baseline entry, or None for the baseline."""
    baseline = _nonempty_str(baseline_id)
    if baseline is None:
        return None
    experience = _experience_of(context, tag_name)
    if experience.degraded:
        return None
    selected = experience.variant(baseline)
    if selected is None:
        return None
    return experience, selected


# --- {% personalize %} ------------------------------------------------------------------------


class PersonalizeNode(Node):
    """``{% personalize baseline %}...{% variant id_or_index %}...{% endpersonalize %}``."""

    tag_name = "personalize"

    def __init__(
        self,
        baseline_id: FilterExpression,
        baseline_nodelist: NodeList,
        branches: list[tuple[FilterExpression, NodeList]],
    ) -> None:
        self.baseline_id = baseline_id
        self.baseline_nodelist = baseline_nodelist
        self.branches = branches

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.baseline_id.token} ({len(self.branches)} variants)>"

    def __iter__(self) -> Iterator[Node]:
        yield from self.baseline_nodelist
        for _, nodelist in self.branches:
            yield from nodelist

    @property
    def nodelist(self) -> NodeList:  # read by get_nodes_by_type
        return NodeList(self)

    def render(self, context: Context) -> SafeString | str:
        branch = self._choose(context)
        return "" if branch is None else branch.render(context)

    def _choose(self, context: Context) -> NodeList | None:
        """The branch to render; None for a hidden variant, which renders nothing."""
        try:
            found = _selected_variant(context, self.tag_name, self.baseline_id.resolve(context))
            if found is None:
                return self.baseline_nodelist
            experience, selected = found
            if selected.hidden:
                _record_entry_view(context, self.tag_name, experience, selected)
                return None
            if selected.variant_index == 0:
                _record_entry_view(context, self.tag_name, experience, selected)
                return self.baseline_nodelist
            for name, nodelist in self.branches:
                if self._matches(name.resolve(context), selected):
                    _record_entry_view(context, self.tag_name, experience, selected)
                    return nodelist
            # The template has no branch for the selected variant: the visitor sees the baseline,
            # so no view of the variant is recorded.
            return self.baseline_nodelist
        except Exception as exc:
            _report_failure(context, self.tag_name, exc)
            return self.baseline_nodelist

    @staticmethod
    def _matches(name: object, selected: SelectedVariant) -> bool:
        if _is_index(name):
            return name == selected.variant_index
        return isinstance(name, str) and name != "" and name == selected.entry_id


@register.tag("personalize")
def do_personalize(parser: Parser, token: Token) -> PersonalizeNode:
    bits = token.split_contents()
    if len(bits) != 2:
        raise template.TemplateSyntaxError(
            f"'{bits[0]}' takes exactly one argument, the baseline entry id "
            f"(a quoted string or a variable), got {len(bits) - 1}"
        )
    baseline_id = parser.compile_filter(bits[1])
    baseline_nodelist = parser.parse(("variant", "endpersonalize"))
    branches: list[tuple[FilterExpression, NodeList]] = []
    next_token = parser.next_token()
    while next_token.contents != "endpersonalize":
        variant_bits = next_token.split_contents()
        if len(variant_bits) != 2:
            raise template.TemplateSyntaxError(
                "'variant' takes exactly one argument: a variant entry id (string) or a variant "
                f"index (1 = first variant), got: {next_token.contents!r}"
            )
        name = parser.compile_filter(variant_bits[1])
        branches.append((name, parser.parse(("variant", "endpersonalize"))))
        next_token = parser.next_token()
    return PersonalizeNode(baseline_id, baseline_nodelist, branches)


# --- {% experience_entry %} -------------------------------------------------------------------


class ExperienceEntryNode(Node):
    """``{% experience_entry baseline [as var] %}``: the selected entry id, else the baseline."""

    tag_name = "experience_entry"

    def __init__(self, baseline_id: FilterExpression, target_var: str | None) -> None:
        self.baseline_id = baseline_id
        self.target_var = target_var

    def render(self, context: Context) -> str:
        baseline_id: object = ""
        try:
            baseline_id = self.baseline_id.resolve(context)
            found = _selected_variant(context, self.tag_name, baseline_id)
            if found is None:
                return _emit(context, baseline_id, self.target_var)
            experience, selected = found
            written = _emit(context, selected.entry_id, self.target_var)
            _record_entry_view(context, self.tag_name, experience, selected)
            return written
        except Exception as exc:
            _report_failure(context, self.tag_name, exc)
            return _emit_fallback(context, baseline_id, self.target_var)


@register.tag("experience_entry")
def do_experience_entry(parser: Parser, token: Token) -> ExperienceEntryNode:
    bits = token.split_contents()
    tag_name = bits[0]
    args, target_var = _split_as(bits[1:], tag_name)
    if len(args) != 1:
        raise template.TemplateSyntaxError(
            f"'{tag_name}' takes one argument, the baseline entry id, then optionally "
            f"'as <variable>'; got: {token.contents!r}"
        )
    return ExperienceEntryNode(parser.compile_filter(args[0]), target_var)


# --- {% experience_change %} ------------------------------------------------------------------


class ExperienceChangeNode(Node):
    """``{% experience_change key default=... [as var] %}``: an inline variable's value."""

    tag_name = "experience_change"

    def __init__(
        self, key: FilterExpression, default: FilterExpression | None, target_var: str | None
    ) -> None:
        self.key = key
        self.default = default
        self.target_var = target_var

    def render(self, context: Context) -> str:
        default: Any = None
        try:
            default = _resolve(self.default, context)
            key = _nonempty_str(self.key.resolve(context))
            if key is None:
                return _emit(context, default, self.target_var)
            experience = _experience_of(context, self.tag_name)
            if experience.degraded:
                return _emit(context, default, self.target_var)
            value = experience.change(key, default)
            # Written out before the view is recorded: a value that cannot be rendered (nested
            # too deep, say) falls back to the default, and the visitor saw no variant.
            written = _emit(context, value, self.target_var)
            self._record(context, experience, key)
            return written
        except Exception as exc:
            _report_failure(context, self.tag_name, exc)
            return _emit_fallback(context, default, self.target_var)

    def _record(self, context: Context, experience: Personalization, key: str) -> None:
        for change in experience.changes:  # the first for the key, as change() reads it
            if change.key == key:
                break
        else:
            return
        if change.experience_id is None:
            return
        index = change.variant_index
        if index is None or index < 0:
            # Which variant this is, the answer does not say: a view of variant 0 would pin the
            # visitor to the baseline, so none is recorded.
            return
        _record_view(
            context,
            self.tag_name,
            experience,
            key,
            experience_id=change.experience_id,
            variant_index=index,
            component_type="Variable",
        )


@register.tag("experience_change")
def do_experience_change(parser: Parser, token: Token) -> ExperienceChangeNode:
    bits = token.split_contents()
    tag_name = bits[0]
    args, target_var = _split_as(bits[1:], tag_name)
    if not args:
        raise template.TemplateSyntaxError(
            f"'{tag_name}' needs the change's key, e.g. "
            f'{{% {tag_name} "ctaColor" default="blue" %}}'
        )
    options = _parse_options(parser, args[1:], tag_name, ("default",))
    return ExperienceChangeNode(parser.compile_filter(args[0]), options.get("default"), target_var)


# --- {% merge_tag %} --------------------------------------------------------------------------


def _is_private_path(path: str) -> bool:
    """Paths may not reach private or dunder attributes (``_x``, ``a._x``, ``__proto__``)."""
    return path.startswith("_") or "._" in path or "__" in path


class MergeTagNode(Node):
    """``{% merge_tag path fallback=... [as var] %}``: a scalar value from the profile."""

    tag_name = "merge_tag"

    def __init__(
        self, path: FilterExpression, fallback: FilterExpression | None, target_var: str | None
    ) -> None:
        self.path = path
        self.fallback = fallback
        self.target_var = target_var

    def render(self, context: Context) -> str:
        fallback: Any = ""
        try:
            fallback = _resolve(self.fallback, context, "")
            value = fallback
            path = _nonempty_str(self.path.resolve(context))
            if path is not None and not _is_private_path(path):
                experience = _experience_of(context, self.tag_name)
                value = experience.merge_tag(path, fallback)
                if value is None:
                    value = fallback
            return _emit(context, value, self.target_var)
        except Exception as exc:
            _report_failure(context, self.tag_name, exc)
            return _emit_fallback(context, fallback, self.target_var)


@register.tag("merge_tag")
def do_merge_tag(parser: Parser, token: Token) -> MergeTagNode:
    bits = token.split_contents()
    tag_name = bits[0]
    args, target_var = _split_as(bits[1:], tag_name)
    if not args:
        raise template.TemplateSyntaxError(
            f"'{tag_name}' needs a profile path, e.g. {{% {tag_name} \"traits.firstname\" "
            'fallback="there" %}'
        )
    options = _parse_options(parser, args[1:], tag_name, ("fallback",))
    return MergeTagNode(parser.compile_filter(args[0]), options.get("fallback"), target_var)


# --- {% experience_json %} --------------------------------------------------------------------

# Django's json_script, for the API's plain JSON: the same output (HTML specials as unicode
# escapes, so no "</script>" can end the block), built with one encoder and three replaces
# instead of a new encoder and a per-character translate on every render.
_SCRIPT_JSON = json.JSONEncoder(default=str)


@functools.lru_cache(maxsize=64)
def _script_start(element_id: str) -> str:
    """The opening tag of the element ``element_id`` (escaped once per id, not per render)."""
    return f'<script id="{escape(element_id)}" type="application/json">'


def json_script(data: Any, element_id: str) -> SafeString:
    text = _SCRIPT_JSON.encode(data)
    if "<" in text or ">" in text or "&" in text:
        text = text.replace("<", "\\u003C").replace(">", "\\u003E").replace("&", "\\u0026")
    return SafeString(f"{_script_start(element_id)}{text}</script>")  # mark_safe of a str


class ExperienceJsonNode(Node):
    """``{% experience_json [element_id] %}``: profile, experiences and changes as JSON."""

    tag_name = "experience_json"

    def __init__(self, element_id: FilterExpression | None) -> None:
        self.element_id = element_id

    def render(self, context: Context) -> SafeString:
        element_id: str = DEFAULT_JSON_ELEMENT_ID
        try:
            element_id = _nonempty_str(_resolve(self.element_id, context)) or element_id
            data = _experience_of(context, self.tag_name).to_json()
            # Serialize here so a value JSON cannot encode falls back instead of raising.
            return json_script(data, element_id)
        except Exception as exc:
            _report_failure(context, self.tag_name, exc)
            return json_script(_EMPTY_JSON, element_id)


@register.tag("experience_json")
def do_experience_json(parser: Parser, token: Token) -> ExperienceJsonNode:
    bits = token.split_contents()
    if len(bits) > 2:
        raise template.TemplateSyntaxError(
            f"'{bits[0]}' takes at most one argument, the element id "
            f"(default {DEFAULT_JSON_ELEMENT_ID!r})"
        )
    return ExperienceJsonNode(parser.compile_filter(bits[1]) if len(bits) == 2 else None)
