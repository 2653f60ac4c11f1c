"""ExperitureClient against a recording stub: request shapes, field semantics, errors, retries."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from typing import Any

import pytest

from django_experience.destinations.errors import (
    DestinationError,
    Forbidden,
    InvalidRecord,
    NotAccepted,
    RateLimited,
    RequestInvalid,
    SchemaMismatch,
    ServerError,
    TransportError,
    Unauthorized,
    UnknownField,
)
from django_experience.destinations.experiture import (
    ExperitureClient,
    ProfileSchema,
    record_from_traits,
)
from django_experience.destinations.http import parse_retry_after
from tests.stub_server import RecordedRequest, StubResponse, StubServer

CORRELATION = "3f1c2a9e-8d7b-4c1e-9a55-0b6d2f7e4a10"


def accepted(request: RecordedRequest) -> StubResponse:
    match_key = request.json().get("matchKey") if request.body else None
    return StubResponse(200, {
        "success": True,
        "data": {
            "operation": "upsert", "objectName": "profiles", "accepted": True,
            "acceptedAt": "2026-04-21T15:30:00Z", "acceptedRecords": 1, "matchKey": match_key,
        },
        "correlationId": CORRELATION,
    })


def failure(status: int, code: str, message: str = "refused", **headers: str) -> StubResponse:
    body = {"success": False, "error": {"code": code, "message": message},
            "correlationId": CORRELATION}
    return StubResponse(status, body, headers)


@pytest.fixture
def experiture(stub: StubServer) -> ExperitureClient:
    stub.responder = accepted
    return ExperitureClient(url=stub.url + "/public/v1", token="tok-123", timeout=2.0,
                            max_retries=2, backoff=0.01)


def test_upsert_sends_record_and_match_key_with_bearer(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    record = {"email": "jane@example.com", "first_name": "Jane", "tier": "gold",
              "last_order_at": "2026-04-20T12:00:00Z"}
    receipt = experiture.upsert_profile(record, match_key="email")

    [request] = stub.requests
    assert (request.method, request.path) == ("POST", "/public/v1/profiles/upsert")
    assert request.header("Authorization") == "Bearer tok-123"
    assert request.header("Content-Type") == "application/json"
    assert request.json() == {"record": record, "matchKey": "email"}
    assert receipt.accepted is True
    assert receipt.accepted_records == 1
    assert receipt.match_key == "email"
    assert receipt.correlation_id == CORRELATION


def test_match_key_left_out_when_not_given(stub: StubServer, experiture: ExperitureClient) -> None:
    experiture.upsert_profile({"email": "jane@example.com"})
    assert "matchKey" not in stub.requests[0].json()


def test_none_is_sent_as_null_and_missing_stays_missing(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    experiture.upsert_profile({"email": "jane@example.com", "tier": None})
    record = stub.requests[0].json()["record"]
    assert record == {"email": "jane@example.com", "tier": None}
    assert "first_name" not in record


def test_datetimes_are_sent_as_iso_8601_with_their_zone(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    experiture.upsert_profile({
        "email": "jane@example.com",
        "utc": dt.datetime(2026, 4, 20, 12, 0, tzinfo=dt.timezone.utc),
        "local": dt.datetime(2026, 4, 20, 14, 0, 30, tzinfo=berlin),
        "birthday": dt.date(1986, 1, 17),
        "offset_string": "2026-04-20T12:00:00+02:00",
        "id": uuid.UUID(int=1),
    })
    record = stub.requests[0].json()["record"]
    assert record["utc"] == "2026-04-20T12:00:00Z"
    assert record["local"] == "2026-04-20T14:00:30+02:00"
    assert record["birthday"] == "1986-01-17"
    assert record["offset_string"] == "2026-04-20T12:00:00+02:00"
    assert record["id"] == str(uuid.UUID(int=1))


@pytest.mark.parametrize(
    ("record", "field"),
    [
        ({"email": "a@b.c", "last_order_at": dt.datetime(2026, 4, 20, 12, 0)}, "last_order_at"),
        ({"email": "a@b.c", "last_order_at": "2026-04-20T12:00:00"}, "last_order_at"),
        ({"email": "a@b.c", "seen": "2026-04-20 12:00"}, "seen"),
        ({"email": "a@b.c", "address": {"moved_at": "2026-04-20T12:00:00.5"}}, "address.moved_at"),
        ({"email": "a@b.c", "visits": ["2026-04-20T12:00:00Z", "2026-04-21T08:00"]},
         "visits[1]"),
    ],
)
def test_naive_datetimes_are_refused_naming_the_field(
    stub: StubServer, experiture: ExperitureClient, record: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        experiture.upsert_profile(record)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert caught.value.code == "CDP_ETL.VALIDATION.REQUEST_INVALID"
    assert (caught.value.status, caught.value.local, caught.value.retryable) == (400, True, False)
    assert stub.requests == []


def test_date_only_strings_are_not_datetimes(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    experiture.upsert_profile({"email": "a@b.c", "birthday": "1986-01-17"})
    assert stub.requests[0].json()["record"]["birthday"] == "1986-01-17"


@pytest.mark.parametrize("record", [{}, [], "email=a@b.c"])
def test_empty_or_non_mapping_record_is_refused(
    stub: StubServer, experiture: ExperitureClient, record: Any
) -> None:
    with pytest.raises(InvalidRecord, match="record"):
        experiture.upsert_profile(record)
    assert stub.requests == []


def test_values_json_cannot_carry_are_refused(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        experiture.upsert_profile({"email": "a@b.c", "blob": object()})
    assert caught.value.field == "blob"
    with pytest.raises(InvalidRecord) as caught:
        experiture.upsert_profile({"email": "a@b.c", "score": float("nan")})
    assert caught.value.field == "score"
    assert stub.requests == []


def test_match_key_must_have_a_value_in_the_record(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    with pytest.raises(InvalidRecord) as caught:
        experiture.upsert_profile({"first_name": "Jane"}, match_key="email")
    assert caught.value.field == "email"
    with pytest.raises(InvalidRecord):
        experiture.upsert_profile({"email": None}, match_key="email")
    assert stub.requests == []


SCHEMA_ANSWERS = [
    {"success": True, "data": {"objectName": "profiles", "primaryKey": "email",
                               "fields": [{"name": "email", "type": "string"},
                                          {"name": "tier", "type": "string"}]}},
    {"data": {"fields": ["email", "tier"]}},
    {"data": {"properties": {"email": {"type": "string"}, "tier": {"type": "string"}}}},
    {"fields": [{"key": "email"}, {"apiName": "tier"}]},
]


@pytest.mark.parametrize("answer", SCHEMA_ANSWERS)
def test_get_schema_reads_the_field_list(
    stub: StubServer, experiture: ExperitureClient, answer: dict[str, Any]
) -> None:
    stub.enqueue(StubResponse(200, answer))
    schema = experiture.get_schema()
    [request] = stub.requests
    assert (request.method, request.path) == ("GET", "/public/v1/metadata/objects/profiles")
    assert request.header("Authorization") == "Bearer tok-123"
    assert schema.fields == frozenset({"email", "tier"})
    assert experiture.schema == schema


def test_a_loaded_schema_refuses_unknown_fields_before_sending(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(200, SCHEMA_ANSWERS[0]))
    experiture.get_schema()
    with pytest.raises(UnknownField) as caught:
        experiture.upsert_profile({"email": "a@b.c", "tier": "gold", "shoe_size": 42})
    assert caught.value.field == "shoe_size"
    assert caught.value.code == "CDP_ETL.VALIDATION.SCHEMA_MISMATCH"
    assert (caught.value.status, caught.value.local) == (422, True)
    with pytest.raises(UnknownField):
        experiture.upsert_profile({"email": "a@b.c"}, match_key="customer_id")
    assert len(stub.requests) == 1  # only the schema request
    experiture.upsert_profile({"email": "a@b.c", "tier": None})
    assert len(stub.requests) == 2


def test_schema_given_to_the_constructor(stub: StubServer) -> None:
    client = ExperitureClient(url=stub.url, token="t", schema=["email"])
    with pytest.raises(UnknownField):
        client.upsert_profile({"email": "a@b.c", "tier": "gold"})
    assert stub.requests == []


def test_unreadable_schema_answer_is_a_transport_error(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(200, {"data": {"objectName": "profiles"}}))
    with pytest.raises(TransportError):
        experiture.get_schema()
    assert experiture.schema is None


@pytest.mark.parametrize(
    ("status", "code", "error_class"),
    [
        (400, "CDP_ETL.VALIDATION.REQUEST_INVALID", RequestInvalid),
        (401, "CDP_ETL.AUTH.UNAUTHORIZED", Unauthorized),
        (403, "CDP_ETL.AUTH.FORBIDDEN", Forbidden),
        (422, "CDP_ETL.VALIDATION.SCHEMA_MISMATCH", SchemaMismatch),
    ],
)
def test_each_documented_error_code_is_raised_with_its_correlation_id(
    stub: StubServer, experiture: ExperitureClient, status: int, code: str,
    error_class: type[DestinationError],
) -> None:
    stub.enqueue(failure(status, code, "what went wrong"))
    with pytest.raises(error_class) as caught:
        experiture.upsert_profile({"email": "a@b.c"})
    error = caught.value
    assert (error.status, error.code, error.message) == (status, code, "what went wrong")
    assert error.correlation_id == CORRELATION
    assert not error.retryable
    assert not error.local
    assert len(stub.requests) == 1  # never retried


def test_code_decides_the_class_over_the_status(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(failure(400, "CDP_ETL.VALIDATION.SCHEMA_MISMATCH"))
    with pytest.raises(SchemaMismatch):
        experiture.upsert_profile({"email": "a@b.c"})


def test_flat_error_body_and_header_correlation_id(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(401, {"code": "CDP_ETL.AUTH.UNAUTHORIZED", "message": "bad token"},
                              {"X-Correlation-Id": "corr-9"}))
    with pytest.raises(Unauthorized) as caught:
        experiture.upsert_profile({"email": "a@b.c"})
    assert (caught.value.message, caught.value.correlation_id) == ("bad token", "corr-9")


def test_rate_limit_is_retried_until_accepted(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(failure(429, "CDP_ETL.RATE.LIMITED", **{"Retry-After": "0"}),
                 failure(429, "CDP_ETL.RATE.LIMITED", **{"Retry-After": "0"}))
    receipt = experiture.upsert_profile({"email": "a@b.c"}, match_key="email")
    assert receipt.accepted
    assert len(stub.requests) == 3
    assert all(request.json() == stub.requests[0].json() for request in stub.requests)


def test_retry_after_is_honoured(stub: StubServer, experiture: ExperitureClient) -> None:
    stub.enqueue(failure(429, "CDP_ETL.RATE.LIMITED", **{"Retry-After": "1"}))
    experiture.upsert_profile({"email": "a@b.c"})
    first, second = stub.requests
    assert second.received_at - first.received_at >= 0.95


def test_retry_after_parses_seconds_and_http_dates() -> None:
    from datetime import datetime, timezone
    from email.utils import formatdate

    moment = 1_800_000_000.0
    now = datetime.fromtimestamp(moment, timezone.utc)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(" 0.25 ") == 0.25
    assert parse_retry_after("-5") == 0.0
    assert parse_retry_after(formatdate(moment + 30, usegmt=True), now=now) == 30.0
    assert parse_retry_after(formatdate(moment - 30, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("inf") is None  # it used to be waited for, or rather crash on
    assert parse_retry_after(None) is None


def test_rate_limit_gives_up_after_max_retries(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.responder = lambda request: failure(429, "CDP_ETL.RATE.LIMITED", "slow down",
                                             **{"Retry-After": "0"})
    with pytest.raises(RateLimited) as caught:
        experiture.upsert_profile({"email": "a@b.c"})
    assert len(stub.requests) == 3  # 1 + max_retries
    error = caught.value
    assert (error.status, error.code, error.correlation_id) == (
        429, "CDP_ETL.RATE.LIMITED", CORRELATION)
    assert error.retry_after == 0
    assert error.retryable


def test_retry_after_longer_than_the_limit_is_left_to_the_caller(stub: StubServer) -> None:
    client = ExperitureClient(url=stub.url, token="t", max_retries=3, max_retry_wait=5)
    stub.enqueue(failure(429, "CDP_ETL.RATE.LIMITED", **{"Retry-After": "120"}))
    started = time.monotonic()
    with pytest.raises(RateLimited) as caught:
        client.upsert_profile({"email": "a@b.c"})
    assert caught.value.retry_after == 120
    assert len(stub.requests) == 1
    assert time.monotonic() - started < 5


def test_rate_limit_without_retry_after_backs_off(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(failure(429, "CDP_ETL.RATE.LIMITED"))
    assert experiture.upsert_profile({"email": "a@b.c"}).accepted
    assert len(stub.requests) == 2


def test_503_is_retried_and_500_is_not(stub: StubServer, experiture: ExperitureClient) -> None:
    stub.enqueue(StubResponse(503, {"success": False}))
    experiture.upsert_profile({"email": "a@b.c"})
    assert len(stub.requests) == 2
    stub.enqueue(StubResponse(500, {"success": False, "error": {"message": "boom"}}))
    with pytest.raises(ServerError, match="boom"):
        experiture.upsert_profile({"email": "a@b.c"})
    assert len(stub.requests) == 3


def test_408_from_a_connection_ended_unread_is_retried(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(408, b"Request Timeout", {"Connection": "close"}))
    assert experiture.upsert_profile({"email": "a@b.c"}).accepted
    assert len(stub.requests) == 2


def test_dropped_connections_are_retried_then_reported(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(drop=True))
    assert experiture.upsert_profile({"email": "a@b.c"}).accepted
    assert len(stub.requests) == 2
    stub.responder = lambda request: StubResponse(drop=True)
    with pytest.raises(TransportError) as caught:
        experiture.upsert_profile({"email": "a@b.c"})
    assert caught.value.status is None
    assert len(stub.requests) == 5


def test_answer_without_the_documented_body_is_a_transport_error(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(200, b"<html>ok</html>"))
    with pytest.raises(TransportError):
        experiture.upsert_profile({"email": "a@b.c"})


def test_error_answer_that_is_not_json_keeps_its_status(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(403, b"Forbidden by proxy"))
    with pytest.raises(Forbidden) as caught:
        experiture.upsert_profile({"email": "a@b.c"})
    assert caught.value.code is None
    assert "Forbidden by proxy" in caught.value.message


def test_timeout_per_attempt(stub: StubServer) -> None:
    client = ExperitureClient(url=stub.url, token="t", timeout=0.2, max_retries=0)
    stub.enqueue(StubResponse(200, {}, delay=1.0))
    with pytest.raises(TransportError):
        client.upsert_profile({"email": "a@b.c"})


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="token"):
        ExperitureClient(token="")
    with pytest.raises(ValueError, match="timeout"):
        ExperitureClient(token="t", timeout=0)
    with pytest.raises(ValueError, match="max_retries"):
        ExperitureClient(token="t", max_retries=-1)
    assert ExperitureClient(token="t").url == "https://api.experiture.ai/public/v1"


def test_record_from_traits_takes_traits_as_they_are_by_default() -> None:
    traits = {"email": "a@b.c", "tier": "gold", "nickname": None}
    record = record_from_traits(traits)
    assert record == traits
    assert record is not traits


def test_record_from_traits_with_fields_renames_and_selects() -> None:
    traits = {"email": "a@b.c", "firstname": "Jane", "tier": None, "secret": "x"}
    fields = {"email": "email", "firstname": "first_name", "tier": "tier", "city": "city"}
    assert record_from_traits(traits, fields) == {
        "email": "a@b.c", "first_name": "Jane", "tier": None,  # null clears; city stays missing
    }
    with pytest.raises(ValueError, match="same field"):
        record_from_traits(traits, {"email": "email", "mail": "email"})
    with pytest.raises(ValueError, match="non-empty"):
        record_from_traits(traits, {"email": ""})


@pytest.mark.parametrize(
    "body", [None, [], {"data": {"fields": 3}}, {"fields": [{"type": "string"}]}, {"data": 1}]
)
def test_profile_schema_from_json_refuses_nonsense(body: Any) -> None:
    with pytest.raises(ValueError):
        ProfileSchema.from_json(body)


def test_a_success_answer_that_accepted_nothing_is_an_error_not_a_receipt(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(200, {
        "success": True, "data": {"operation": "upsert", "accepted": False,
                                  "acceptedRecords": 0},
        "correlationId": CORRELATION}))
    with pytest.raises(NotAccepted) as caught:
        experiture.upsert_profile({"email": "a@b.c"})
    assert caught.value.status == 200 and caught.value.correlation_id == CORRELATION
    assert not caught.value.retryable
    assert "did not accept the record" in str(caught.value)
    assert len(stub.requests) == 1


def test_receipt_fields_of_the_wrong_type_are_left_out_not_a_crash(
    stub: StubServer, experiture: ExperitureClient
) -> None:
    stub.enqueue(StubResponse(200, {
        "success": True, "data": {"accepted": True, "acceptedRecords": "one", "matchKey": 5,
                                  "acceptedAt": None},
        "correlationId": ["x"]}))
    receipt = experiture.upsert_profile({"email": "a@b.c"})
    assert (receipt.accepted, receipt.accepted_records, receipt.match_key,
            receipt.accepted_at, receipt.correlation_id) == (True, 0, None, None, None)
