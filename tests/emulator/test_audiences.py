"""Every audience rule type, evaluated by the emulator after each request's events."""

from __future__ import annotations

from typing import Any

import pytest

from django_experience.emulator import ConfigError, EmulatorConfig, EmulatorServer
from tests.emulator.conftest import LIBRARY, Api, event, identify, page, track

BERLIN = {"city": "Berlin", "region": "Berlin", "country": "Germany", "countryCode": "DE",
          "continent": "EU"}

CASES: list[tuple[str, dict[str, Any], list[dict[str, Any]], bool]] = [
    ("trait equals", {"trait": "tier", "equals": "gold"}, [identify("u", tier="gold")], True),
    ("trait equals other", {"trait": "tier", "equals": "gold"}, [identify("u", tier="x")], False),
    ("trait equals is typed", {"trait": "n", "equals": 1}, [identify("u", n=True)], False),
    ("trait gte", {"trait": "age", "gte": 18}, [identify("u", age=18)], True),
    ("trait gte below", {"trait": "age", "gte": 18}, [identify("u", age=17.5)], False),
    ("trait gte numeric string", {"trait": "age", "gte": 18}, [identify("u", age="21")], True),
    ("trait lte", {"trait": "age", "lte": 18}, [identify("u", age=3)], True),
    ("trait lte above", {"trait": "age", "lte": 18}, [identify("u", age=30)], False),
    ("trait lte strings", {"trait": "since", "lte": "2024-01-01"},
     [identify("u", since="2023-05-01")], True),
    ("trait contains text", {"trait": "email", "contains": "@acme."},
     [identify("u", email="a@acme.com")], True),
    ("trait contains list", {"trait": "tags", "contains": "vip"},
     [identify("u", tags=["new", "vip"])], True),
    ("trait contains missing", {"trait": "tags", "contains": "vip"},
     [identify("u", tags=["new"])], False),
    ("trait exists", {"trait": "email", "exists": True}, [identify("u", email="x")], True),
    ("trait exists absent", {"trait": "email", "exists": True}, [identify("u", a=1)], False),
    ("trait exists null", {"trait": "email", "exists": True}, [identify("u", email=None)], False),
    ("trait not exists", {"trait": "email", "exists": False}, [page("/")], True),
    ("nested trait", {"trait": "address.city", "equals": "Oslo"},
     [identify("u", address={"city": "Oslo"})], True),
    ("page path", {"page": {"path": "/pricing"}}, [page("/pricing")], True),
    ("page path other", {"page": {"path": "/pricing"}}, [page("/pricing/x")], False),
    ("page prefix", {"page": {"pathPrefix": "/blog/"}}, [page("/blog/post-1")], True),
    ("page prefix other", {"page": {"pathPrefix": "/blog/"}}, [page("/shop")], False),
    ("page from context only", {"page": {"path": "/ctx"}},
     [event("page", properties={"path": "", "query": {}, "referrer": "", "search": "", "url": ""},
            context={"library": LIBRARY,
                     "page": {"path": "/ctx", "url": "https://e.com/ctx"}})], True),
    ("tracked page is no view", {"page": {"path": "/t"}},
     [dict(track("x"), context={"library": LIBRARY, "page": {"path": "/t"}})], False),
    ("utm campaign from query", {"utm": {"campaign": "spring"}},
     [page("/", query="utm_campaign=spring")], True),
    ("utm campaign from context", {"utm": {"campaign": "spring"}},
     [page("/", campaign={"name": "spring"})], True),
    ("utm source medium", {"utm": {"source": "news", "medium": "email"}},
     [page("/", query="utm_source=news&utm_medium=email")], True),
    ("utm term content", {"utm": {"term": "shoes", "content": "banner"}},
     [page("/", campaign={"term": "shoes", "content": "banner"})], True),
    ("utm other campaign", {"utm": {"campaign": "spring"}},
     [page("/", query="utm_campaign=fall")], False),
    ("event", {"event": "Added to cart"}, [track("Added to cart")], True),
    ("event other", {"event": "Added to cart"}, [track("Viewed")], False),
    ("returning visitor", {"returningVisitor": True},
     [page("/", timestamp="2024-01-01T00:00:00Z"), page("/", timestamp="2024-01-02T00:00:00Z")],
     True),
    ("first visit", {"returningVisitor": True},
     [page("/", timestamp="2024-01-01T00:00:00Z"), page("/", timestamp="2024-01-01T00:10:00Z")],
     False),
    ("new visitor", {"returningVisitor": False}, [page("/")], True),
    ("location country code", {"location": {"countryCode": "de"}}, [page("/", location=BERLIN)],
     True),
    ("location city continent", {"location": {"city": "Berlin", "continent": "EU"}},
     [page("/", location=BERLIN)], True),
    ("location region country", {"location": {"region": "Bavaria", "country": "Germany"}},
     [page("/", location=BERLIN)], False),
    ("location unknown", {"location": {"countryCode": "DE"}}, [page("/")], False),
    ("all", {"all": [{"event": "a"}, {"trait": "t", "exists": True}]},
     [track("a"), identify("u", t=1)], True),
    ("all one missing", {"all": [{"event": "a"}, {"event": "b"}]}, [track("a")], False),
    ("any", {"any": [{"event": "a"}, {"event": "b"}]}, [track("b")], True),
    ("any none", {"any": [{"event": "a"}, {"event": "b"}]}, [track("c")], False),
    ("empty all", {"all": []}, [page("/")], True),
    ("not", {"not": {"event": "a"}}, [track("b")], True),
    ("not matching", {"not": {"event": "a"}}, [track("a")], False),
]


@pytest.mark.parametrize(("rule", "events", "member"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_rule(server: EmulatorServer, api: Api, rule: dict[str, Any],
              events: list[dict[str, Any]], member: bool) -> None:
    server.state.configure({"audiences": [{"id": "aud", "rules": rule}]})
    audiences = api.create(*events)["profile"]["audiences"]
    assert audiences == (["aud"] if member else [])


def test_audiences_are_re_evaluated_after_every_request(server: EmulatorServer,
                                                        api: Api) -> None:
    server.state.configure({"audiences": [
        {"id": "gold", "rules": {"trait": "tier", "equals": "gold"}},
        {"id": "buyer", "rules": {"event": "bought"}}]})
    profile_id = api.create(identify("u", tier="gold"))["profile"]["id"]
    assert api.get(f"/profiles/{profile_id}").json()["data"]["profile"]["audiences"] == ["gold"]
    after = api.update(profile_id, identify("u", tier="silver"), track("bought"))
    assert after["profile"]["audiences"] == ["buyer"]
    batch = api.post("/events", {"events": [dict(identify("u", tier="gold"),
                                                 anonymousId=profile_id)]})
    assert batch.json()["data"]["profiles"][0]["audiences"] == ["gold", "buyer"]


def test_a_get_evaluates_audiences_for_its_answer_but_stores_none(server: EmulatorServer,
                                                                   api: Api) -> None:
    profile_id = api.create(identify("u", tier="gold"))["profile"]["id"]
    server.state.configure({"audiences": [{"id": "gold",
                                           "rules": {"trait": "tier", "equals": "gold"}}]})
    answer = api.get(f"/profiles/{profile_id}").json()["data"]["profile"]
    assert answer["audiences"] == ["gold"]
    stored = server.state.profile_json(profile_id)
    assert stored is not None and stored["audiences"] == []


@pytest.mark.parametrize(
    ("config", "names"),
    [
        ({"audiences": [{"id": "a"}]}, "audiences[0].rules"),
        ({"audiences": [{"id": "a", "rules": {}}]}, "audiences[0].rules"),
        ({"audiences": [{"id": "a", "rules": {"trait": "t"}}]}, "exactly one of"),
        ({"audiences": [{"id": "a", "rules": {"trait": "t", "gte": True}}]}, "gte"),
        ({"audiences": [{"id": "a", "rules": {"page": {"url": "/"}}}]}, "page"),
        ({"audiences": [{"id": "a", "rules": {"utm": {"campaing": "x"}}}]}, "utm.campaing"),
        ({"audiences": [{"id": "a", "rules": {"location": {"zip": "1"}}}]}, "location.zip"),
        ({"audiences": [{"id": "a", "rules": {"all": [{"event": ""}]}}]}, "rules.all[0].event"),
        ({"audiences": [{"id": "a", "rules": {"not": []}}]}, "rules.not"),
        ({"audiences": [{"id": "a", "rules": {"event": "x"}},
                        {"id": "a", "rules": {"event": "y"}}]}, "twice"),
        ({"experiences": [{"id": "e", "audience": {"id": "nope"}}]}, "experiences[0].audience"),
        ({"experiences": [{"id": "e", "trafficAllocation": 2}]}, "trafficAllocation"),
        # Python's json reads NaN and Infinity: no variant or audience can be chosen by them.
        ({"audiences": [{"id": "a", "rules": {"trait": "t", "gte": float("nan")}}]}, "gte"),
        ({"audiences": [{"id": "a", "rules": {"trait": "t", "lte": float("inf")}}]}, "lte"),
        ({"experiences": [{"id": "e", "distribution": [0.5, float("nan")]}]}, "distribution[1]"),
        ({"experiences": [{"id": "e", "distribution": [float("inf"), 1]}]}, "distribution[0]"),
        ({"experiences": [{"id": "e", "distribution": [0.5, 10**400]}]}, "distribution[1]"),
        ({"experiences": [{"id": "e", "distribution": [
            {"index": 0, "start": 0, "end": float("nan")}]}]}, "distribution[0].end"),
        ({"experiences": [{"id": "e", "distribution": [
            {"index": 0, "start": float("-inf"), "end": 1}]}]}, "distribution[0].start"),
        ({"experiences": [{"id": "e", "components": [
            {"type": "InlineVariable", "key": "k", "baseline": {"value": 1},
             "variants": [{"value": {"price": float("nan")}}]}]}]},
         "experiences[0].components[0].variants[0].value.price"),
        ({"audiences": [{"id": "a", "rules": {"trait": "t", "equals": float("inf")}}]},
         "audiences[0].rules.equals"),
        ({"experiences": [{"id": "e", "type": "ab"}]}, "experiences[0].type"),
        ({"experiences": [{"id": "e", "distribution": [{"index": 0, "start": 1, "end": 0}]}]},
         "distribution[0]"),
        ({"experiences": [{"id": "e", "components": [{"type": "Other", "baseline": {}}]}]},
         "components[0].type"),
        ({"experiences": [{"id": "e", "components": [
            {"type": "EntryReplacement", "baseline": {"id": "b"}, "variants": [{}]}]}]},
         "components[0].variants[0].id"),
        ({"experiences": [{"id": "e", "components": [
            {"type": "InlineVariable", "key": "k", "baseline": {}}]}]},
         "components[0].baseline.value"),
        ({"experiences": [{"id": "e", "components": [
            {"type": "InlineVariable", "key": "k", "baseline": {"value": "a"},
             "variants": [{"value": [1]}]}]}]}, "components[0].variants[0].value"),
        ({"nonsense": []}, "unknown keys"),
    ],
)
def test_bad_configs_name_the_field(config: dict[str, Any], names: str) -> None:
    with pytest.raises(ConfigError, match=names.replace("[", r"\[").replace("]", r"\]")):
        EmulatorConfig.from_json(config)


def test_put_config_validates_and_replaces(api: Api) -> None:
    bad = api.control("PUT", "config", {"audiences": [{"id": "a"}]})
    assert bad.status_code == 400 and "audiences[0].rules" in bad.json()["message"]
    good = {"audiences": [{"id": "a", "rules": {"event": "x"}}], "experiences": []}
    assert api.control("PUT", "config", good).status_code == 200
    assert api.control("GET", "config").json()["data"] == good
