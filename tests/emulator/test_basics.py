"""The six endpoints over real HTTP: envelope, bodies, error codes."""

from __future__ import annotations

from tests.emulator.conftest import Api, identify, page, track


def test_create_answers_the_documented_envelope(api: Api) -> None:
    response = api.post("/profiles", {"events": [page("/")]})
    assert response.status_code == 200
    body = response.json()
    assert body["error"] is None and body["message"] == "ok"
    profile = body["data"]["profile"]
    assert profile["id"] == profile["stableId"]
    assert set(profile) >= {"random", "audiences", "traits", "location", "session"}
    assert body["data"]["experiences"] == [] and body["data"]["changes"] == []


def test_json_and_text_plain_bodies_are_both_accepted(api: Api) -> None:
    for text_plain in (True, False):
        response = api.post("/profiles", {"events": [track("x")]}, text_plain=text_plain)
        assert response.status_code == 200


def test_update_get_and_delete(api: Api) -> None:
    created = api.create(page("/"))
    profile_id = created["profile"]["id"]
    updated = api.update(profile_id, identify("u-1", plan="pro"))
    assert updated["profile"]["traits"] == {"plan": "pro"}
    fetched = api.get(f"/profiles/{profile_id}").json()["data"]
    assert fetched["profile"]["traits"] == {"plan": "pro"}
    assert api.delete(f"/profiles/{profile_id}").json() == {
        "data": {}, "error": None, "message": "ok"}
    for response in (api.get(f"/profiles/{profile_id}"),
                     api.post(f"/profiles/{profile_id}", {"events": [track("x")]}),
                     api.delete(f"/profiles/{profile_id}")):
        assert response.status_code == 404
        assert response.json()["error"] == {"code": "ERR_PROFILE_NOT_FOUND"}
        assert response.json()["data"] == {}


def test_update_of_an_unseen_id_creates_it(api: Api) -> None:
    data = api.update("my-own-id", page("/"))
    assert data["profile"]["id"] == "my-own-id"
    assert api.get("/profiles/my-own-id").status_code == 200


def test_get_of_an_unknown_id_is_profile_not_found(api: Api) -> None:
    response = api.get("/profiles/nobody")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ERR_PROFILE_NOT_FOUND"


def test_profile_ids_with_an_encoded_slash_are_one_id(api: Api) -> None:
    # Clients percent-encode ids; an encoded slash is part of the id, not a path separator.
    assert api.get("/profiles/a%2Fb").json()["error"]["code"] == "ERR_PROFILE_NOT_FOUND"
    data = api.update("a%2Fb", page("/"))
    assert data["profile"]["id"] == "a/b"
    assert api.get("/profiles/a%2Fb").json()["data"]["profile"]["id"] == "a/b"
    assert api.get("/profiles/a/b").json()["error"]["code"] == "ERR_NOT_FOUND"
