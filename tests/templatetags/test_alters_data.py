"""Templates call attributes that take no arguments: ``{{ experience.forget }}`` must not forget
the profile, nor ``{{ request.experience_visitor.sign_out }}`` sign the visitor out. Every method
that changes state is marked ``alters_data``, which Django's templates refuse to call."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
from django.template import Context, Template
from django.test import Client, RequestFactory
from django.utils.functional import SimpleLazyObject

from django_experience.api.types import ProfileResult
from django_experience.conf import conf
from django_experience.emulator.handle import EmulatorHandle
from django_experience.personalization import NULL_PERSONALIZATION, Personalization
from django_experience.visitor import Visitor
from tests.middleware.test_personalization import RESULT_JSON, FakeSource
from tests.templatetags import views
from tests.templatetags.test_tags_in_requests import CONFIG

# The public methods that only read (they take arguments anyway, but for to_json).
READ_ONLY = {
    Personalization: {"variant", "change", "find_change", "merge_tag", "to_json"},
    Visitor: {"known_id", "budget_left", "tracks_component_views", "shares_profile"},
}


def _methods(cls: type) -> list[str]:
    return [
        name
        for name, member in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    ]


@pytest.mark.parametrize("cls", [Personalization, Visitor])
def test_every_method_that_changes_state_is_marked(cls: type) -> None:
    unmarked = [
        name
        for name in _methods(cls)
        if name not in READ_ONLY[cls] and not getattr(getattr(cls, name), "alters_data", False)
    ]
    assert unmarked == []
    for name in ("forget", "adopt", "identify", "track", "component_viewed", "aload"):
        if cls is Personalization:
            assert getattr(cls, name).alters_data is True


MUTATORS = "|".join(
    "{{ experience." + name + " }}"
    for name in ("forget", "adopt", "identify", "track", "component_viewed", "aload")
)


@pytest.mark.parametrize("lazy", [False, True], ids=["object", "context-processor"])
def test_a_template_cannot_reset_or_send_through_the_experience(lazy: bool) -> None:
    source = FakeSource(ProfileResult.from_json(RESULT_JSON))
    experience = Personalization(source)
    assert experience.profile is not None
    template = Template(MUTATORS + "|{{ experience.profile.traits.firstname }}")
    # The context processor hands templates a lazy object: its methods are marked the same.
    given: Any = SimpleLazyObject(lambda: experience) if lazy else experience
    assert template.render(Context({"experience": given})) == "||||||Ada"
    assert experience.resolved and source.resolves == 1
    assert source.sent == [] and source.identified == []


def test_the_null_experience_is_marked_the_same() -> None:
    template = Template(MUTATORS)
    assert template.render(Context({"experience": NULL_PERSONALIZATION})) == "|||||"


@pytest.mark.django_db
def test_a_template_cannot_sign_the_visitor_out(
    experience_emulator: EmulatorHandle, client: Client
) -> None:
    experience_emulator.configure(CONFIG)
    views.SOURCES["visitor"] = (
        "{{ request.experience_visitor.sign_out }}{{ request.experience_visitor.resolve }}"
        "{{ request.experience_visitor.release_held }}{{ request.experience.forget }}"
        '{% personalize "hero-default" %}baseline{% variant "hero-gold" %}gold{% endpersonalize %}'
    )
    try:
        client.get("/tags/source/visitor/")
        profile_id = client.cookies[conf.COOKIE_NAME].value
        response = client.get("/tags/source/visitor/")
    finally:
        views.SOURCES.clear()
    assert response.content == b"gold"
    assert client.cookies[conf.COOKIE_NAME].value == profile_id  # still the same visitor
    assert experience_emulator.request_count() == 2  # one call a page, none from the template


def test_a_request_factory_request_is_fine_too() -> None:
    request = RequestFactory().get("/")
    visitor = Visitor(request, personalized=False, excluded=True)
    template = Template("{{ v.sign_out }}{{ v.anonymous_id }}{{ v.cancel_pending }}")
    assert template.render(Context({"v": visitor})) == ""
    assert not visitor.signed_out and visitor.profile_id is None
