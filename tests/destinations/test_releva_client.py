"""RelevaClient against a recording stub: shapes, per-profile validation, batches, errors."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from django_experience.destinations.errors import (
    RateLimited,
    RequestInvalid,
    ServerError,
    Unauthorized,
)
from django_experience.destinations.releva import (
    RelevaClient,
    prepare_profile,
    profile_from_traits,
)
from tests.stub_server import StubResponse, StubServer

ACCEPTED = StubResponse(202, {})


def problem(status: int, message: str, **headers: str) -> StubResponse:
    return StubResponse(status, {"message": message}, headers)


@pytest.fixture
def releva(stub: StubServer) -> RelevaClient:
    stub.responder = lambda request: ACCEPTED
    return RelevaClient(url=stub.url + "/api/v0", secret_key="sk-live", timeout=2.0,
                        max_retries=2, backoff=0.01)


def sent_profiles(stub: StubServer) -> list[dict[str, Any]]:
    return [entry for request in stub.requests for entry in request.json()["profiles"]]


def test_upsert_sends_documented_body_with_bearer_secret_key(
    stub: StubServer, releva: RelevaClient
) -> None:
    profile = {
        "email": "georgi@releva.ai", "firstName": "Georgi", "lastName": "Georgiev",
        "phoneNumber": "+359888123456", "registeredAt": "2019-08-18T05:48:42.419Z",
        "subscribedAt": "2019-08-18T05:48:42.419Z", "birthday": "1986-01-17",
        "unsubscribeLink": "http://shop.com/unsubscribe/1", "consent": "privacyPolicy",
        "location": {"lat": 39.9352959, "lon": 23.5825895},
        "addTags": ["available"], "removeTags": ["churned"],
        "custom": {"string": [{"key": "gender", "values": ["M"]}]},
        "subscriptions": ["weeklyNewsletter", "promo"],
    }
    result = releva.upsert_profiles([profile], subscribed_at_changed=True)

    [request] = stub.requests
    assert (request.method, request.path) == ("POST", "/api/v0/profiles")
    assert request.header("Authorization") == "Bearer sk-live"
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {"profiles": [{"profile": profile, "subscribedAtChanged": True}]}
    assert result.sent == (0,)
    assert result.ok


def test_subscribed_at_changed_defaults_to_false_and_may_be_given_per_profile(
    stub: StubServer, releva: RelevaClient
) -> None:
    profiles = [{"email": "a@x.io"}, {"email": "b@x.io"}]
    releva.upsert_profiles(profiles)
    releva.upsert_profiles(profiles, subscribed_at_changed=[True, False])
    flags = [entry["subscribedAtChanged"] for entry in sent_profiles(stub)]
    assert flags == [False, False, True, False]
    with pytest.raises(ValueError, match="one per profile"):
        releva.upsert_profiles(profiles, subscribed_at_changed=[True])


def test_none_subscriptions_are_not_sent_and_an_empty_list_is(
    stub: StubServer, releva: RelevaClient
) -> None:
    releva.upsert_profiles([
        {"email": "a@x.io", "subscriptions": None, "firstName": None},
        {"email": "b@x.io", "subscriptions": []},
    ])
    first, second = (entry["profile"] for entry in sent_profiles(stub))
    assert first == {"email": "a@x.io"}
    assert second == {"email": "b@x.io", "subscriptions": []}


def test_python_values_are_sent_in_the_documented_formats(
    stub: StubServer, releva: RelevaClient
) -> None:
    releva.upsert_profiles([{
        "phoneNumber": "+49875345976",
        "registeredAt": dt.datetime(2019, 8, 18, 5, 48, 42, tzinfo=dt.timezone.utc),
        "birthday": dt.date(1986, 1, 17),
        "location": {"lat": 39, "lon": -23},
        "addTags": ("a", "b"),
    }])
    profile = sent_profiles(stub)[0]["profile"]
    assert profile == {
        "phoneNumber": "+49875345976", "registeredAt": "2019-08-18T05:48:42Z",
        "birthday": "1986-01-17", "location": {"lat": 39.0, "lon": -23.0},
        "addTags": ["a", "b"],
    }
    assert isinstance(profile["location"]["lat"], float)


INVALID = [
    ({"firstName": "No Contact"}, "email"),
    ({"email": None, "phoneNumber": None}, "email"),
    ({"email": "", "phoneNumber": "+491"}, "email"),
    ({"email": "not-an-address"}, "email"),
    ({"email": 42}, "email"),
    ({"phoneNumber": "0888123456"}, "phoneNumber"),
    ({"phoneNumber": "+359 888 123"}, "phoneNumber"),
    ({"phoneNumber": "+"}, "phoneNumber"),
    ({"email": "a@x.io", "consent": "everything"}, "consent"),
    ({"email": "a@x.io", "registeredAt": "yesterday"}, "registeredAt"),
    ({"email": "a@x.io", "registeredAt": "2019-08-18"}, "registeredAt"),
    ({"email": "a@x.io", "subscribedAt": 1566107322}, "subscribedAt"),
    ({"email": "a@x.io", "birthday": "1986-01-17T00:00:00Z"}, "birthday"),
    ({"email": "a@x.io", "birthday": dt.datetime(1986, 1, 17, tzinfo=dt.timezone.utc)},
     "birthday"),
    ({"email": "a@x.io", "birthday": "17/01/1986"}, "birthday"),
    ({"email": "a@x.io", "location": {"lat": "39.9", "lon": 23.5}}, "location"),
    ({"email": "a@x.io", "location": {"lat": 39.9}}, "location"),
    ({"email": "a@x.io", "location": {"lat": 91.0, "lon": 0.0}}, "location"),
    ({"email": "a@x.io", "location": {"lat": True, "lon": 0.0}}, "location"),
    ({"email": "a@x.io", "location": [39.9, 23.5]}, "location"),
    ({"email": "a@x.io", "addTags": "vip"}, "addTags"),
    ({"email": "a@x.io", "removeTags": ["ok", 3]}, "removeTags"),
    ({"email": "a@x.io", "subscriptions": "promo"}, "subscriptions"),
    ({"email": "a@x.io", "custom": {"gender": "M"}}, "custom"),
    ({"email": "a@x.io", "custom": {"string": [{"key": "gender", "values": "M"}]}}, "custom"),
    ({"email": "a@x.io", "custom": {"string": [{"key": "", "values": ["M"]}]}}, "custom"),
    ({"email": "a@x.io", "custom": {"string": [{"key": "n", "values": [1]}]}}, "custom"),
    ({"email": "a@x.io", "custom": {"numeric": [{"key": "n", "values": ["1"]}]}}, "custom"),
    ({"email": "a@x.io", "custom": ["gender"]}, "custom"),
    ({"email": "a@x.io", "firstName": ["Jane"]}, "firstName"),
    ({"email": "a@x.io", "unsubscribeLink": 1}, "unsubscribeLink"),
    ({"email": "a@x.io", "favouriteColour": "red"}, "favouriteColour"),
]


@pytest.mark.parametrize(("profile", "field"), INVALID)
def test_each_validation_rule_rejects_with_index_and_reason_and_valid_ones_are_sent(
    stub: StubServer, releva: RelevaClient, profile: dict[str, Any], field: str
) -> None:
    valid = [{"email": "first@x.io"}, {"phoneNumber": "+49875345976"}]
    result = releva.upsert_profiles([valid[0], profile, valid[1]])

    [rejection] = result.rejected
    assert rejection.index == 1
    assert rejection.field == field
    assert field in rejection.reason
    assert result.rejected_indexes == (1,)
    assert result.sent == (0, 2)
    assert [entry["profile"] for entry in sent_profiles(stub)] == valid
    assert not result.ok


def test_a_profile_that_is_not_an_object_is_rejected(
    stub: StubServer, releva: RelevaClient
) -> None:
    result = releva.upsert_profiles(["a@x.io", {"email": "a@x.io"}])  # type: ignore[list-item]
    assert result.rejected_indexes == (0,)
    assert result.sent == (1,)


def test_nothing_is_sent_when_every_profile_is_invalid(
    stub: StubServer, releva: RelevaClient
) -> None:
    result = releva.upsert_profiles([{"firstName": "A"}, {"email": "nope"}])
    assert result.rejected_indexes == (0, 1)
    assert result.sent == ()
    assert stub.requests == []


def test_every_consent_value_of_the_document_is_accepted() -> None:
    for consent in ("legitimateInterest", "privacyPolicy", "mandatoryCookies", "cookiesPolicy"):
        assert prepare_profile({"email": "a@x.io", "consent": consent})["consent"] == consent


@pytest.mark.parametrize(("count", "batch_size", "sizes"), [
    (250, 100, [100, 100, 50]),
    (100, 100, [100]),
    (5, 2, [2, 2, 1]),
    (3, 1, [1, 1, 1]),
])
def test_valid_profiles_go_in_batches_of_the_configured_size_in_order(
    stub: StubServer, count: int, batch_size: int, sizes: list[int]
) -> None:
    stub.responder = lambda request: ACCEPTED
    client = RelevaClient(url=stub.url, secret_key="k", batch_size=batch_size)
    profiles = [{"email": f"user{i}@x.io"} for i in range(count)]
    result = client.upsert_profiles(profiles)
    assert [len(request.json()["profiles"]) for request in stub.requests] == sizes
    assert [entry["profile"] for entry in sent_profiles(stub)] == profiles
    assert result.sent == tuple(range(count))


def test_rejected_profiles_do_not_count_against_a_batch(stub: StubServer) -> None:
    stub.responder = lambda request: ACCEPTED
    client = RelevaClient(url=stub.url, secret_key="k", batch_size=2)
    result = client.upsert_profiles(
        [{"email": "a@x.io"}, {"email": "bad"}, {"email": "b@x.io"}, {"email": "c@x.io"}]
    )
    assert [len(request.json()["profiles"]) for request in stub.requests] == [2, 1]
    assert result.sent == (0, 2, 3)


def test_default_batch_size_is_100() -> None:
    assert RelevaClient(secret_key="k").batch_size == 100
    assert RelevaClient(secret_key="k").url == "https://releva.ai/api/v0"
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            RelevaClient(secret_key="k", batch_size=bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="secret key"):
        RelevaClient(secret_key="")


def test_unauthorized_stops_sending_and_reports_every_unsent_index(
    stub: StubServer
) -> None:
    client = RelevaClient(url=stub.url, secret_key="wrong", batch_size=2)
    stub.enqueue(problem(401, "Invalid secret key"))
    result = client.upsert_profiles([{"email": f"u{i}@x.io"} for i in range(5)])
    assert len(stub.requests) == 1
    assert result.sent == ()
    assert result.failed_indexes == (0, 1, 2, 3, 4)
    error = result.failures[0].error
    assert isinstance(error, Unauthorized)
    assert (error.status, error.message, error.code) == (401, "Invalid secret key", None)


def test_a_refused_batch_does_not_stop_the_others(stub: StubServer) -> None:
    stub.responder = lambda request: ACCEPTED
    client = RelevaClient(url=stub.url, secret_key="k", batch_size=2)
    stub.enqueue(ACCEPTED, problem(400, "profiles[1].profile.email is taken"))
    result = client.upsert_profiles([{"email": f"u{i}@x.io"} for i in range(5)])
    assert len(stub.requests) == 3
    assert result.sent == (0, 1, 4)
    [failure] = result.failures
    assert failure.indexes == (2, 3)
    assert isinstance(failure.error, RequestInvalid)
    assert failure.error.message == "profiles[1].profile.email is taken"


def test_rate_limit_is_retried_honouring_retry_after(
    stub: StubServer, releva: RelevaClient
) -> None:
    stub.enqueue(problem(429, "Too many requests", **{"Retry-After": "0"}))
    result = releva.upsert_profiles([{"email": "a@x.io"}])
    assert result.sent == (0,)
    assert len(stub.requests) == 2
    assert stub.requests[0].body == stub.requests[1].body


def test_rate_limit_after_all_retries_fails_the_rest(
    stub: StubServer, releva: RelevaClient
) -> None:
    stub.responder = lambda request: problem(429, "Too many requests", **{"Retry-After": "0"})
    result = releva.upsert_profiles([{"email": "a@x.io"}])
    assert len(stub.requests) == 3
    error = result.failures[0].error
    assert isinstance(error, RateLimited)
    assert error.retryable
    assert error.message == "Too many requests"


def test_server_error_is_reported_with_the_api_message(
    stub: StubServer, releva: RelevaClient
) -> None:
    stub.enqueue(problem(500, "Internal error, try later"))
    result = releva.upsert_profiles([{"email": "a@x.io"}])
    error = result.failures[0].error
    assert isinstance(error, ServerError)
    assert error.message == "Internal error, try later"
    assert len(stub.requests) == 1


def test_profile_from_traits_defaults() -> None:
    traits = {
        "email": "jane@example.com", "first_name": "Jane", "lastName": "Doe",
        "phone": "+49875345976", "date_joined": "2024-01-02T03:04:05Z",
        "birthday": "1990-05-06", "tier": "gold", "orders": 3, "score": 4.5, "vip": True,
        "since": dt.date(2020, 1, 1), "interests": ["ski", "golf"], "nickname": None,
        "address": {"city": "Sofia"}, "empty": [],
    }
    profile = profile_from_traits(traits)
    assert profile == {
        "email": "jane@example.com", "firstName": "Jane", "lastName": "Doe",
        "phoneNumber": "+49875345976", "registeredAt": "2024-01-02T03:04:05Z",
        "birthday": "1990-05-06",
        "custom": {"string": [
            {"key": "tier", "values": ["gold"]},
            {"key": "orders", "values": ["3"]},
            {"key": "score", "values": ["4.5"]},
            {"key": "vip", "values": ["true"]},
            {"key": "since", "values": ["2020-01-01"]},
            {"key": "interests", "values": ["ski", "golf"]},
        ]},
    }
    assert prepare_profile(profile)["custom"] == profile["custom"]


def test_profile_from_traits_prefers_the_exact_field_name_over_an_alias() -> None:
    assert profile_from_traits({"first_name": "alias", "firstName": "exact", "email": "a@x.io"})[
        "firstName"] == "exact"


def test_profile_from_traits_with_fields_selects_and_renames() -> None:
    traits = {"mail": "jane@example.com", "given": "Jane", "tier": "gold", "secret": "s",
              "mobile": None}
    fields = {"mail": "email", "given": "firstName", "tier": "custom.loyaltyTier",
              "mobile": "phoneNumber"}
    assert profile_from_traits(traits, fields) == {
        "email": "jane@example.com", "firstName": "Jane",
        "custom": {"string": [{"key": "loyaltyTier", "values": ["gold"]}]},
    }
    with pytest.raises(ValueError, match="neither a Releva profile field"):
        profile_from_traits(traits, {"mail": "e_mail"})
    with pytest.raises(ValueError, match="not scalar"):
        profile_from_traits({"a": {"b": 1}}, {"a": "custom.a"})


def test_profile_from_traits_keeps_a_custom_trait_and_adds_entries() -> None:
    custom = {"string": [{"key": "gender", "values": ["F"]}]}
    profile = profile_from_traits({"email": "a@x.io", "custom": custom, "tier": "gold"})
    assert profile["custom"] == {"string": [{"key": "gender", "values": ["F"]},
                                            {"key": "tier", "values": ["gold"]}]}
    assert custom == {"string": [{"key": "gender", "values": ["F"]}]}  # input not changed
