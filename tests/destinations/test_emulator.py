"""The emulated Experiture and Releva APIs over real HTTP, driven by our clients and by raw
requests for what the clients refuse to send."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
from collections.abc import Iterable
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_experience.destinations.errors import (
    Forbidden,
    RateLimited,
    Unauthorized,
    UnknownField,
)
from django_experience.destinations.experiture import ExperitureClient
from django_experience.destinations.releva import RelevaClient
from django_experience.emulator import destinations
from tests.destinations.conftest import DestinationServer

AUTH = {"Authorization": "Bearer any-token"}


def experiture(server: DestinationServer, token: str = "any-token") -> ExperitureClient:
    return ExperitureClient(url=server.experiture_url, token=token, timeout=5, backoff=0.01)


def releva(server: DestinationServer, key: str = "any-key", **options: Any) -> RelevaClient:
    return RelevaClient(url=server.releva_url, secret_key=key, timeout=5, backoff=0.01,
                        **options)


def post(url: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(url, data=data, timeout=5,
                         headers={"Content-Type": "application/json",
                                  **(AUTH if headers is None else headers)})


def assert_experiture_error(response: requests.Response, status: int, code: str | None) -> None:
    assert response.status_code == status
    body = response.json()
    assert body["success"] is False
    assert body["error"].get("code") == code
    assert body["error"]["message"]
    uuid.UUID(body["correlationId"])


# --- Experiture ---------------------------------------------------------------------------


def test_experiture_upsert_is_stored_and_acknowledged(
    destination_server: DestinationServer,
) -> None:
    receipt = experiture(destination_server).upsert_profile(
        {"email": "jane@example.com", "first_name": "Jane", "tier": "gold",
         "last_order_at": "2026-04-20T12:00:00Z"},
        match_key="email",
    )
    assert receipt.accepted and receipt.accepted_records == 1
    assert receipt.match_key == "email"
    assert receipt.accepted_at and receipt.accepted_at.endswith("Z")
    uuid.UUID(str(receipt.correlation_id))
    assert destinations.snapshot() == {
        "experiture": [{"email": "jane@example.com", "first_name": "Jane", "tier": "gold",
                        "last_order_at": "2026-04-20T12:00:00Z"}],
        "releva": [],
    }


def test_experiture_takes_a_date_time_whose_zone_offset_has_seconds(
    destination_server: DestinationServer,
) -> None:
    """Amsterdam in 1890 was 19 min 32 s ahead of UTC: ISO 8601 has no such offset, so the
    client sends the instant in UTC, which the platform takes."""
    amsterdam_mean_time = dt.timezone(dt.timedelta(minutes=19, seconds=32))
    joined = dt.datetime(1890, 6, 1, 12, 0, tzinfo=amsterdam_mean_time)
    receipt = experiture(destination_server).upsert_profile(
        {"email": "jane@example.com", "joined_at": joined}, match_key="email"
    )
    assert receipt.accepted
    (stored,) = destinations.snapshot()["experiture"]
    assert stored["joined_at"] == "1890-06-01T11:40:28Z"


def test_experiture_missing_fields_stay_and_null_clears(
    destination_server: DestinationServer,
) -> None:
    client = experiture(destination_server)
    client.upsert_profile({"email": "jane@example.com", "first_name": "Jane", "tier": "gold"})
    client.upsert_profile({"email": "jane@example.com", "tier": None, "city": "Sofia"})
    client.upsert_profile({"email": "other@example.com", "tier": "silver"})
    assert destinations.snapshot()["experiture"] == [
        {"email": "jane@example.com", "first_name": "Jane", "tier": None, "city": "Sofia"},
        {"email": "other@example.com", "tier": "silver"},
    ]


def test_experiture_match_key_chooses_the_identity(destination_server: DestinationServer) -> None:
    client = experiture(destination_server)
    for email in ("old@example.com", "new@example.com"):
        client.upsert_profile({"customer_id": "c-1", "email": email}, match_key="customer_id")
    assert destinations.snapshot()["experiture"] == [
        {"customer_id": "c-1", "email": "new@example.com"}
    ]
    response = post(destination_server.experiture_url + "/profiles/upsert",
                    {"record": {"first_name": "No Key"}})
    assert_experiture_error(response, 400, "CDP_ETL.VALIDATION.REQUEST_INVALID")
    assert "email" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    "headers", [{}, {"Authorization": "Bearer "}, {"Authorization": "Basic x"}]
)
def test_experiture_requires_a_bearer_token(
    destination_server: DestinationServer, headers: dict[str, str]
) -> None:
    response = post(destination_server.experiture_url + "/profiles/upsert",
                    {"record": {"email": "a@b.c"}}, headers)
    assert_experiture_error(response, 401, "CDP_ETL.AUTH.UNAUTHORIZED")
    assert destinations.snapshot()["experiture"] == []


def test_experiture_configured_token_and_read_only_tokens(
    destination_server: DestinationServer,
) -> None:
    destinations.configure(experiture_token="right", experiture_read_only_tokens=["right"])
    with pytest.raises(Unauthorized) as unauthorized:
        experiture(destination_server, "wrong").upsert_profile({"email": "a@b.c"})
    assert unauthorized.value.code == "CDP_ETL.AUTH.UNAUTHORIZED"
    assert unauthorized.value.correlation_id
    with pytest.raises(Forbidden) as forbidden:
        experiture(destination_server, "right").upsert_profile({"email": "a@b.c"})
    assert forbidden.value.status == 403
    assert forbidden.value.code == "CDP_ETL.AUTH.FORBIDDEN"
    assert forbidden.value.correlation_id
    # a read-only token may still read the schema
    assert "email" in experiture(destination_server, "right").get_schema().fields
    assert destinations.snapshot()["experiture"] == []


def test_experiture_schema_mismatch(destination_server: DestinationServer) -> None:
    destinations.configure(experiture_schema={"email": "string", "tier": "string",
                                              "last_order_at": "datetime"})
    client = experiture(destination_server)
    schema = client.get_schema()
    assert schema.fields == {"email", "tier", "last_order_at"}
    assert schema.primary_key == "email"
    with pytest.raises(UnknownField):
        client.upsert_profile({"email": "a@b.c", "shoe_size": 42})
    client.upsert_profile({"email": "a@b.c", "tier": "gold"})

    response = post(destination_server.experiture_url + "/profiles/upsert",
                    {"record": {"email": "a@b.c", "shoe_size": 42}})
    assert_experiture_error(response, 422, "CDP_ETL.VALIDATION.SCHEMA_MISMATCH")
    assert "shoe_size" in response.json()["error"]["message"]
    assert destinations.snapshot()["experiture"] == [{"email": "a@b.c", "tier": "gold"}]


def test_experiture_schema_without_configuration_lists_the_fields_seen(
    destination_server: DestinationServer,
) -> None:
    client = experiture(destination_server)
    client.upsert_profile({"email": "a@b.c", "tier": "gold"})
    assert client.get_schema().fields == {"email", "tier"}


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "JSON"),
        ([], "object"),
        ({}, "record"),
        ({"record": {}}, "at least one"),
        ({"record": "a@b.c"}, "record"),
        ({"record": {"email": "a@b.c"}, "matchKey": ""}, "matchKey"),
        ({"record": {"email": "a@b.c"}, "matchKey": 3}, "matchKey"),
        ({"record": {"email": "a@b.c"}, "upsert": True}, "upsert"),
        ({"record": {"email": "a@b.c", "last_order_at": "2026-04-20T12:00:00"}},
         "last_order_at"),
        ({"record": {"email": "a@b.c", "history": [{"at": "2026-04-20 12:00"}]}},
         "history[0].at"),
        (b'{"record": {"email": "a@b.c", "score": NaN}}', "not valid JSON"),
    ],
)
def test_experiture_request_invalid(
    destination_server: DestinationServer, body: Any, fragment: str
) -> None:
    response = post(destination_server.experiture_url + "/profiles/upsert", body)
    assert_experiture_error(response, 400, "CDP_ETL.VALIDATION.REQUEST_INVALID")
    assert fragment in response.json()["error"]["message"]
    assert destinations.snapshot()["experiture"] == []


@pytest.mark.parametrize("moment", [
    "2026-04-21T15:30:00Z", "2026-04-21T15:30:00.123+02:00", "2026-04-21 15:30-0500",
    "2026-04-21", "not a date",
])
def test_experiture_accepts_zoned_times_and_other_strings(
    destination_server: DestinationServer, moment: str
) -> None:
    response = post(destination_server.experiture_url + "/profiles/upsert",
                    {"record": {"email": "a@b.c", "last_order_at": moment}})
    assert response.status_code == 200, response.text
    assert destinations.snapshot()["experiture"] == [{"email": "a@b.c", "last_order_at": moment}]


def test_experiture_wrong_content_type_path_and_method(
    destination_server: DestinationServer,
) -> None:
    response = requests.post(destination_server.experiture_url + "/profiles/upsert",
                             data="record=1", headers=AUTH, timeout=5)
    assert_experiture_error(response, 400, "CDP_ETL.VALIDATION.REQUEST_INVALID")
    response = post(destination_server.experiture_url + "/records/profiles/upsert", {})
    assert response.status_code == 404
    response = requests.get(destination_server.experiture_url + "/profiles/upsert",
                            headers=AUTH, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"


def test_experiture_rate_limit_is_retried_by_the_client(
    destination_server: DestinationServer,
) -> None:
    destinations.inject_errors("experiture", status=429, times=2, retry_after="0")
    client = experiture(destination_server)
    assert client.upsert_profile({"email": "a@b.c"}).accepted
    destinations.inject_errors("experiture", status=429, times=10, retry_after="0")
    with pytest.raises(RateLimited) as caught:
        client.upsert_profile({"email": "b@b.c"})
    assert caught.value.code == "CDP_ETL.RATE.LIMITED"
    assert caught.value.retry_after == 0
    assert caught.value.correlation_id
    assert [record["email"] for record in destinations.snapshot()["experiture"]] == ["a@b.c"]


# --- Releva -------------------------------------------------------------------------------


def test_releva_upsert_is_stored_and_answers_202(destination_server: DestinationServer) -> None:
    result = releva(destination_server).upsert_profiles(
        [
            {"email": "georgi@releva.ai", "firstName": "Georgi", "addTags": ["a", "b"],
             "custom": {"string": [{"key": "gender", "values": ["M"]}]},
             "subscriptions": ["promo"], "location": {"lat": 39.9, "lon": 23.5}},
            {"phoneNumber": "+49875345976", "birthday": "1986-01-17"},
            {"email": "broken"},
        ],
        subscribed_at_changed=True,
    )
    assert result.sent == (0, 1)
    assert result.rejected_indexes == (2,)
    assert destinations.snapshot()["releva"] == [
        {"email": "georgi@releva.ai", "firstName": "Georgi",
         "custom": {"string": [{"key": "gender", "values": ["M"]}]},
         "subscriptions": ["promo"], "location": {"lat": 39.9, "lon": 23.5},
         "tags": ["a", "b"], "subscribedAtChanged": True},
        {"phoneNumber": "+49875345976", "birthday": "1986-01-17", "subscribedAtChanged": True},
    ]
    response = post(destination_server.releva_url + "/profiles",
                    {"profiles": [{"profile": {"email": "x@y.io"}, "subscribedAtChanged": False}]})
    assert response.status_code == 202
    assert response.json() == {}


def test_releva_tags_and_subscriptions_semantics(destination_server: DestinationServer) -> None:
    client = releva(destination_server)
    client.upsert_profiles([{"email": "a@x.io", "addTags": ["vip", "new"],
                             "subscriptions": ["promo", "weekly"]}])
    client.upsert_profiles([{"email": "a@x.io", "removeTags": ["new"], "subscriptions": None}])
    [stored] = destinations.snapshot()["releva"]
    assert stored["tags"] == ["vip"]
    assert stored["subscriptions"] == ["promo", "weekly"]  # None had no effect
    client.upsert_profiles([{"email": "a@x.io", "subscriptions": []}])
    assert destinations.snapshot()["releva"][0]["subscriptions"] == []  # [] clears


def test_releva_batches_arrive_whole(destination_server: DestinationServer) -> None:
    client = releva(destination_server, batch_size=7)
    result = client.upsert_profiles([{"email": f"u{i}@x.io"} for i in range(30)])
    assert result.sent == tuple(range(30))
    assert len(destinations.snapshot()["releva"]) == 30


def test_releva_secret_key(destination_server: DestinationServer) -> None:
    response = post(destination_server.releva_url + "/profiles",
                    {"profiles": [{"profile": {"email": "a@x.io"}, "subscribedAtChanged": False}]},
                    {})
    assert response.status_code == 401
    assert response.json()["message"]
    destinations.configure(releva_secret_key="sk-right")
    result = releva(destination_server, "sk-wrong").upsert_profiles([{"email": "a@x.io"}])
    error = result.failures[0].error
    assert isinstance(error, Unauthorized)
    assert "secret key" in error.message
    assert releva(destination_server, "sk-right").upsert_profiles([{"email": "a@x.io"}]).ok
    assert len(destinations.snapshot()["releva"]) == 1


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[", "JSON"),
        ({"profile": {"email": "a@x.io"}}, "profiles"),
        ({"profiles": []}, "empty"),
        ({"profiles": ["a@x.io"]}, "profiles[0]"),
        ({"profiles": [{"profile": {"email": "a@x.io"}}]}, "subscribedAtChanged"),
        ({"profiles": [{"profile": {"email": "a@x.io"}, "subscribedAtChanged": "yes"}]},
         "subscribedAtChanged"),
        ({"profiles": [{"profile": {"email": "a@x.io"}, "subscribedAtChanged": True},
                       {"profile": {"phoneNumber": "0888"}, "subscribedAtChanged": True}]},
         "profiles[1].profile: phoneNumber"),
        ({"profiles": [{"profile": {"email": "a@x.io", "consent": "all"},
                        "subscribedAtChanged": True}]}, "consent"),
        ({"profiles": [{"profile": {"firstName": "A"}, "subscribedAtChanged": True}]},
         "email or phoneNumber"),
        ({"profiles": [{"profile": {"email": "a@x.io"}, "subscribedAtChanged": True,
                        "extra": 1}]}, "extra"),
        (b'{"profiles": [{"profile": {"email": "a@x.io", "score": -Infinity}}]}',
         "not valid JSON"),
    ],
)
def test_releva_validation_answers_400_with_a_message(
    destination_server: DestinationServer, body: Any, fragment: str
) -> None:
    response = post(destination_server.releva_url + "/profiles", body)
    assert response.status_code == 400
    assert fragment in response.json()["message"]
    assert destinations.snapshot()["releva"] == []  # a refused request stores nothing


def test_releva_rate_limit_is_retried_by_the_client(destination_server: DestinationServer) -> None:
    destinations.inject_errors("releva", status=429, times=1, retry_after="0")
    assert releva(destination_server).upsert_profiles([{"email": "a@x.io"}]).ok
    destinations.inject_errors("releva", status=500, times=1)
    result = releva(destination_server).upsert_profiles([{"email": "b@x.io"}])
    assert result.failures[0].error.status == 500
    assert result.failures[0].error.message == "Emulated failure"


def test_releva_unknown_path_and_method(destination_server: DestinationServer) -> None:
    assert post(destination_server.releva_url + "/profiles/register", {}).status_code == 404
    response = requests.get(destination_server.releva_url + "/profiles", headers=AUTH, timeout=5)
    assert response.status_code == 405


# --- both ---------------------------------------------------------------------------------


def test_apps_work_when_the_mount_moves_the_prefix_into_script_name() -> None:
    destinations.reset()
    answers: list[str] = []

    def start_response(status: str, headers: list[tuple[str, str]]) -> None:
        answers.append(status)

    body = json.dumps({"record": {"email": "a@b.c"}}).encode()
    environ = {
        "REQUEST_METHOD": "POST", "SCRIPT_NAME": "/experiture", "PATH_INFO":
        "/public/v1/profiles/upsert", "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(body)), "HTTP_AUTHORIZATION": "Bearer t",
        "wsgi.input": io.BytesIO(body),
    }
    chunks: Iterable[bytes] = destinations.experiture_app(environ, start_response)
    assert answers == ["200 OK"]
    assert json.loads(b"".join(chunks))["success"] is True
    destinations.reset()


def test_reset_forgets_records_configuration_and_faults(
    destination_server: DestinationServer,
) -> None:
    destinations.configure(experiture_token="only-this")
    destinations.inject_errors("releva", times=5)
    experiture(destination_server, "only-this").upsert_profile({"email": "a@b.c"})
    destinations.reset()
    assert destinations.snapshot() == {"experiture": [], "releva": []}
    experiture(destination_server, "another").upsert_profile({"email": "a@b.c"})
    assert releva(destination_server).upsert_profiles([{"email": "a@x.io"}]).ok


def test_snapshot_is_a_copy(destination_server: DestinationServer) -> None:
    experiture(destination_server).upsert_profile({"email": "a@b.c"})
    destinations.snapshot()["experiture"][0]["email"] = "changed"
    assert destinations.snapshot()["experiture"][0]["email"] == "a@b.c"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=12,
)
FIELDS = st.sampled_from(["email", "phoneNumber", "consent", "birthday", "registeredAt",
                          "location", "custom", "addTags", "subscriptions", "firstName"])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    record=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=4),
    profile=st.dictionaries(FIELDS, JSON_VALUES, max_size=4),
    noise=JSON_VALUES,
)
def test_bad_input_never_causes_a_server_error(
    destination_server: DestinationServer, record: dict[str, Any], profile: dict[str, Any],
    noise: Any,
) -> None:
    for url, body in (
        (destination_server.experiture_url + "/profiles/upsert", {"record": record}),
        (destination_server.experiture_url + "/profiles/upsert", noise),
        (destination_server.releva_url + "/profiles",
         {"profiles": [{"profile": profile, "subscribedAtChanged": False}]}),
        (destination_server.releva_url + "/profiles", {"profiles": noise}),
    ):
        response = post(url, body)
        assert response.status_code in (200, 202, 400, 422), (url, body, response.text)
        response.json()


def test_one_client_shared_by_threads(destination_server: DestinationServer) -> None:
    from concurrent.futures import ThreadPoolExecutor

    experiture_client = experiture(destination_server)
    releva_client = releva(destination_server, batch_size=5)

    def work(worker: int) -> None:
        for n in range(10):
            experiture_client.upsert_profile({"email": f"w{worker}-{n}@x.io", "n": n})
        assert releva_client.upsert_profiles(
            [{"email": f"w{worker}-{n}@x.io"} for n in range(10)]
        ).ok

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(work, range(8)))
    stored = destinations.snapshot()
    expected = {f"w{worker}-{n}@x.io" for worker in range(8) for n in range(10)}
    assert {record["email"] for record in stored["experiture"]} == expected
    assert {profile["email"] for profile in stored["releva"]} == expected
    assert len(stored["experiture"]) == len(stored["releva"]) == 80
