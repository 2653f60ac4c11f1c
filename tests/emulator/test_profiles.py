"""Profiles: traits, location, sessions, upsert, merge, namespaces, preflight, stickiness."""

from __future__ import annotations

from typing import Any

from django_experience.emulator import EmulatorServer
from tests.emulator.conftest import Api, component, identify, page, track


def test_traits_are_shallow_merged_latest_wins(api: Api) -> None:
    profile_id = api.create(identify("u1", a=1, nested={"x": 1}))["profile"]["id"]
    data = api.update(profile_id, identify("u1", b=2, nested={"y": 2}), identify("u1", a=3))
    assert data["profile"]["traits"] == {"a": 3, "b": 2, "nested": {"y": 2}}


def test_location_from_event_context_and_from_options(api: Api) -> None:
    berlin = {"city": "Berlin", "countryCode": "DE", "continent": "EU"}
    data = api.create(page("/", location=berlin))
    assert data["profile"]["location"] == berlin
    paris = {"city": "Paris", "countryCode": "FR"}
    response = api.post(f"/profiles/{data['profile']['id']}",
                        {"events": [track("x")], "options": {"location": paris}})
    assert response.json()["data"]["profile"]["location"] == paris


def test_session_continues_within_30_minutes_and_restarts_after(api: Api) -> None:
    first = api.create(page("/landing", timestamp="2024-05-01T10:00:00Z"))
    session = first["profile"]["session"]
    assert session["count"] == 1 and session["isReturningVisitor"] is False
    assert session["landingPage"]["path"] == "/landing"
    profile_id = first["profile"]["id"]
    same = api.update(profile_id, page("/two", timestamp="2024-05-01T10:29:00Z"))["profile"]
    assert same["session"]["id"] == session["id"]
    assert same["session"]["count"] == 1
    assert same["session"]["activeSessionLength"] == 29 * 60 * 1000
    later = api.update(profile_id, page("/back", timestamp="2024-05-01T11:00:00.001Z"))["profile"]
    assert later["session"]["id"] != session["id"]
    assert later["session"]["count"] == 2
    assert later["session"]["isReturningVisitor"] is True
    assert later["session"]["landingPage"]["path"] == "/back"
    assert later["session"]["activeSessionLength"] == 0
    assert later["session"]["averageSessionLength"] == 29 * 60 * 1000 / 2


def test_identify_merges_the_visitor_into_the_identified_profile(api: Api,
                                                                 server: EmulatorServer) -> None:
    known = api.create(identify("user-7", plan="pro", name="Old"))["profile"]["id"]
    visitor = api.create(page("/pricing"), identify("anon", name="Ann"))["profile"]["id"]
    merged = api.update(visitor, identify("user-7", name="New"))
    assert merged["profile"]["id"] == known
    assert merged["profile"]["traits"] == {"plan": "pro", "name": "New"}
    for response in (api.get(f"/profiles/{visitor}"),
                     api.post(f"/profiles/{visitor}", {"events": [track("x")]})):
        assert response.json()["error"]["code"] == "ERR_PROFILE_NOT_FOUND"
    stored = server.state.profile_json(known)
    assert stored is not None
    assert [e["type"] for e in stored["events"]] == ["identify", "page", "identify", "identify"]
    assert server.state.profile_json(visitor) is None


def _identify_at(when: str, user_id: str, **traits: Any) -> dict[str, Any]:
    return dict(identify(user_id, **traits), timestamp=f"2024-{when}T00:00:00.000Z")


def test_a_late_identify_with_an_older_timestamp_keeps_the_newer_traits(api: Api) -> None:
    api.update("p", _identify_at("06-01", "u", plan="pro"))
    late = api.update("p", _identify_at("01-01", "u", plan="free", city="Oslo"))["profile"]
    assert late["traits"] == {"plan": "pro", "city": "Oslo"}  # a key not set yet is taken
    # Within one request too: the events' order is not what decides.
    both = api.update("q", _identify_at("06-01", "u2", plan="pro"),
                      _identify_at("01-01", "u2", plan="free"))["profile"]
    assert both["traits"] == {"plan": "pro"}


def test_a_merge_keeps_the_trait_value_set_last_in_either_profile(api: Api) -> None:
    # The visitor's plan was set in January, the owner's in June: June's value is the latest.
    api.update("visitor", _identify_at("01-01", "newsletter-7", plan="free", seen="jan"))
    api.update("owner", _identify_at("06-01", "u", plan="pro", city="Oslo"))
    merged = api.update("visitor", _identify_at("07-01", "u"))["profile"]
    assert merged["id"] == "owner"
    assert merged["traits"] == {"plan": "pro", "city": "Oslo", "seen": "jan"}


def test_a_merge_decides_each_trait_key_by_its_own_time(api: Api) -> None:
    api.update("owner", _identify_at("02-01", "u", a="owner-feb"),
               _identify_at("09-01", "u", b="owner-sep"))
    api.update("visitor", _identify_at("05-01", "anon", a="visitor-may", b="visitor-may"))
    merged = api.update("visitor", _identify_at("10-01", "u"))["profile"]
    assert merged["traits"] == {"a": "visitor-may", "b": "owner-sep"}
    # The merged profile remembers those times: an older value does not come back later.
    api.update("v2", _identify_at("03-01", "anon-2", a="v2-mar", b="v2-mar"))
    again = api.update("v2", _identify_at("11-01", "u"))["profile"]
    assert again["id"] == "owner"
    assert again["traits"] == {"a": "visitor-may", "b": "owner-sep"}


def test_the_merging_identifys_own_traits_are_ordered_by_time_too(api: Api) -> None:
    api.update("owner", _identify_at("06-01", "u", plan="pro"))
    # Arriving last, dated March: older than June's value, as a late identify of the owner's
    # own would be, so it does not replace it; a key the owner lacks is taken.
    merged = api.update("visitor", _identify_at("03-01", "u", plan="team", seat=3))["profile"]
    assert merged["traits"] == {"plan": "pro", "seat": 3}


def test_a_batch_merge_orders_traits_by_time_too(api: Api) -> None:
    api.update("owner", _identify_at("06-01", "u", plan="pro"))
    events = [dict(_identify_at("01-01", "anon", plan="free"), anonymousId="b1"),
              dict(_identify_at("07-01", "u"), anonymousId="b1")]
    profiles = api.post("/events", {"events": events}).json()["data"]["profiles"]
    assert [(p["id"], p["traits"]) for p in profiles] == [("owner", {"plan": "pro"})]


def test_identify_on_create_merges_too(api: Api) -> None:
    known = api.create(identify("user-8", plan="pro"))["profile"]["id"]
    data = api.create(page("/"), identify("user-8"))
    assert data["profile"]["id"] == known


def test_batch_identify_merges_and_answers_the_survivor(api: Api) -> None:
    known = api.create(identify("user-9", plan="pro"))["profile"]["id"]
    events = [dict(identify("user-9", extra=True), anonymousId="anon-1"),
              dict(track("later"), anonymousId="anon-1")]
    profiles = api.post("/events", {"events": events}).json()["data"]["profiles"]
    assert [p["id"] for p in profiles] == [known]
    assert profiles[0]["traits"] == {"plan": "pro", "extra": True}


def test_a_batch_answers_one_profile_per_anonymous_id_merged_or_not(api: Api) -> None:
    events = [dict(identify("user-3", a=1), anonymousId="anon-a"),
              dict(identify("user-3", b=2), anonymousId="anon-b"),
              dict(track("t"), anonymousId="anon-c")]
    profiles = api.post("/events", {"events": events}).json()["data"]["profiles"]
    assert [p["id"] for p in profiles] == ["anon-a", "anon-a", "anon-c"]
    assert profiles[0] == profiles[1] and profiles[1]["traits"] == {"a": 1, "b": 2}


def test_namespace_mismatch(server: EmulatorServer, api: Api) -> None:
    profile_id = api.create(page("/"))["profile"]["id"]
    staging = Api(server, env="staging")
    other_org = Api(server, org="someone-else")
    for other in (staging, other_org):
        for response in (other.get(f"/profiles/{profile_id}"),
                         other.post(f"/profiles/{profile_id}", {"events": [track("x")]}),
                         other.delete(f"/profiles/{profile_id}")):
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "ERR_NAMESPACE_MISMATCH"


def test_preflight_answers_like_a_real_call_and_stores_nothing(api: Api,
                                                               server: EmulatorServer) -> None:
    preflight = api.post("/profiles", {"events": [identify("u", a=1)]},
                         params={"type": "preflight"})
    assert preflight.status_code == 200
    assert preflight.json()["data"]["profile"]["traits"] == {"a": 1}
    assert server.state.profiles_json() == []
    profile_id = api.create(identify("u2", a=1))["profile"]["id"]
    answer = api.post(f"/profiles/{profile_id}", {"events": [identify("u2", a=2)]},
                      params={"type": "preflight"}).json()["data"]
    assert answer["profile"]["traits"] == {"a": 2}
    assert api.get(f"/profiles/{profile_id}").json()["data"]["profile"]["traits"] == {"a": 1}
    unseen = api.post("/profiles/never-stored", {"events": [page("/")]},
                      params={"type": "preflight"})
    assert unseen.json()["data"]["profile"]["id"] == "never-stored"
    assert api.get("/profiles/never-stored").status_code == 404
    assert server.state.stats_json()["events"] == 1


def test_batch_creates_one_profile_per_anonymous_id(api: Api, server: EmulatorServer) -> None:
    events = [dict(page("/"), anonymousId="a"), dict(identify("ua", x=1), anonymousId="b"),
              dict(track("t"), anonymousId="a")]
    response = api.post("/events", {"events": events}, text_plain=False)
    profiles = response.json()["data"]["profiles"]
    assert [p["id"] for p in profiles] == ["a", "b"]
    assert "experiences" not in response.json()["data"]
    stored = server.state.profile_json("a")
    assert stored is not None and [e["type"] for e in stored["events"]] == ["page", "track"]


def test_a_batch_creates_a_deleted_profile_anew(api: Api, server: EmulatorServer) -> None:
    api.post("/events", {"events": [dict(identify("u", plan="pro"), anonymousId="gone")]})
    assert api.delete("/profiles/gone").status_code == 200
    response = api.post("/events", {"events": [dict(track("back"), anonymousId="gone")]})
    assert response.status_code == 200, response.text
    [profile] = response.json()["data"]["profiles"]
    assert (profile["id"], profile["traits"]) == ("gone", {})  # new: nothing of the old one
    stored = server.state.profile_json("gone")
    assert stored is not None and [e["type"] for e in stored["events"]] == ["track"]
    # A merged-away id is an alias, not a deleted profile: it still answers 404.
    api.post("/events", {"events": [dict(identify("u2"), anonymousId="owner")]})
    api.post("/events", {"events": [dict(identify("u2"), anonymousId="alias")]})
    alias = api.post("/events", {"events": [dict(track("x"), anonymousId="alias")]})
    assert alias.json()["error"]["code"] == "ERR_PROFILE_NOT_FOUND"


def test_import_answers_at_once_and_processes_in_the_background(api: Api,
                                                                server: EmulatorServer) -> None:
    events = [dict(identify(f"u{i}", n=i), anonymousId=f"imp-{i}") for i in range(5)]
    response = api.post("/import/events", {"events": events}, text_plain=False)
    assert response.json() == {"data": {"message": "Events accepted."}, "error": None,
                               "message": "ok"}
    assert server.state.drain(5)
    assert sorted(p["id"] for p in server.state.profiles_json()) == [f"imp-{i}" for i in range(5)]
    unknown = Api(server, org="nobody")
    server.state.restrict(Api(server).org)
    assert unknown.post("/import/events", b"not json").status_code == 200
    assert unknown.post("/import/events", {"events": events}).status_code == 200


def test_repeated_message_ids_are_stored_once(api: Api, server: EmulatorServer) -> None:
    event = page("/", message_id="m-1")
    profile_id = api.create(event)["profile"]["id"]
    api.update(profile_id, event, page("/x", message_id="m-2"))
    stored = server.state.profile_json(profile_id)
    assert stored is not None and len(stored["events"]) == 2
    assert server.state.stats_json()["events"] == 2


def _component(experience_id: str, index: int) -> dict[str, Any]:
    return component("hero", experience_id, index)


def test_component_events_pin_sticky_variants(server: EmulatorServer, api: Api) -> None:
    server.state.configure({"experiences": [{
        "id": "exp", "distribution": [{"index": 0, "start": 0, "end": 1}],
        "components": [{"type": "EntryReplacement", "baseline": {"id": "base"},
                        "variants": [{"id": "v1"}, {"id": "v2"}]}]}]})
    data = api.create(page("/"))
    assert data["experiences"][0]["variantIndex"] == 0
    assert "sticky" not in data["experiences"][0]  # the document leaves it out unless true
    pinned = api.update(data["profile"]["id"], _component("exp", 2))
    assert pinned["experiences"][0] == {"experienceId": "exp", "variantIndex": 2,
                                        "variants": {"base": "v2"}, "sticky": True}
    assert pinned["profile"]["stickyVariants"] == {"exp": 2}
    later = api.get(f"/profiles/{data['profile']['id']}").json()["data"]
    assert later["experiences"][0]["variantIndex"] == 2 and later["experiences"][0]["sticky"]


def test_a_view_of_a_variant_the_experience_lacks_pins_nothing(
        server: EmulatorServer, api: Api) -> None:
    server.state.configure({"experiences": [{
        "id": "exp", "distribution": [{"index": 1, "start": 0, "end": 1}],
        "components": [{"type": "EntryReplacement", "baseline": {"id": "base"},
                        "variants": [{"id": "v1"}]}]}]})
    profile_id = api.create(page("/"))["profile"]["id"]
    data = api.update(profile_id, _component("exp", 5))
    # The distribution decides, as if no view had been recorded: index and entry agree.
    assert data["experiences"][0] == {"experienceId": "exp", "variantIndex": 1,
                                      "variants": {"base": "v1"}}


def test_rejected_imports_are_only_logged(api: Api, server: EmulatorServer,
                                          caplog: Any) -> None:
    with caplog.at_level("WARNING", logger="django_experience.emulator"):
        response = api.post("/import/events", {"events": [track("no anonymous id")]})
        assert response.status_code == 200
        assert server.state.drain(5)
    assert "anonymousId" in caplog.text
    assert server.state.profiles_json() == []
    assert server.state.stats.requests() == {"import": {"200": 1}}


def test_every_endpoint_is_counted_by_name(api: Api, server: EmulatorServer) -> None:
    profile_id = api.create(page())["profile"]["id"]
    api.update(profile_id, track("x"))
    api.get(f"/profiles/{profile_id}")
    api.post("/events", {"events": [dict(track("x"), anonymousId="b")]})
    api.post("/import/events", {"events": [dict(track("x"), anonymousId="c")]})
    api.delete(f"/profiles/{profile_id}")
    assert server.state.stats_json() == {
        "requests": {name: {"200": 1} for name in
                     ("create", "update", "get", "batch", "import", "delete")},
        "events": 4,
    }
