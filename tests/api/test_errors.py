"""Error answers and envelope variants map to the typed exceptions."""

from __future__ import annotations

import pytest

from django_experience.api import ExperienceClient
from django_experience.api.errors import (
    ClientError,
    ConfigNotFound,
    ExperienceAPIError,
    InvalidData,
    MalformedResponse,
    NamespaceMismatch,
    NotFound,
    ProfileNotFound,
    ProfileOverload,
    ServerError,
    TransportError,
)
from django_experience.api.events import track_event
from tests.api.payloads import profile_result_json
from tests.stub_server import StubResponse, StubServer, error_envelope


@pytest.mark.parametrize(
    ("status", "code", "expected"),
    [
        (400, "ERR_INVALID_DATA", InvalidData),
        (404, "ERR_CONFIG_NOT_FOUND", ConfigNotFound),
        (404, "ERR_PROFILE_NOT_FOUND", ProfileNotFound),
        (404, "ERR_NAMESPACE_MISMATCH", NamespaceMismatch),
        (429, "ERR_PROFILE_OVERLOAD", ProfileOverload),
        (500, "ERR_INTERNAL_SERVER_ERROR", ServerError),
    ],
)
def test_every_documented_error_code(
    stub: StubServer,
    client: ExperienceClient,
    status: int,
    code: str,
    expected: type[ExperienceAPIError],
) -> None:
    stub.responder = lambda request: error_envelope(status, code, "the server says why")
    with pytest.raises(expected) as caught:
        client.update_profile("p-1", [track_event("a")])
    error = caught.value
    assert type(error) is expected
    assert (error.status, error.code) == (status, code)
    assert "the server says why" in error.message
    assert isinstance(error, ExperienceAPIError)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (404, {"data": {}, "error": {"code": "ERR_SOMETHING_NEW"}, "message": "?"}, NotFound),
        (418, {"data": {}, "error": True, "message": "teapot"}, ClientError),
        (503, {"data": {}, "error": True, "message": "busy"}, ServerError),
        (502, b"<html>Bad gateway</html>", ServerError),
        (400, b"", InvalidData),
    ],
)
def test_status_decides_when_the_code_does_not(
    stub: StubServer,
    client: ExperienceClient,
    status: int,
    body: object,
    expected: type[ExperienceAPIError],
) -> None:
    stub.responder = lambda request: StubResponse(status, body)
    with pytest.raises(expected) as caught:
        client.get_profile("p-1")
    assert caught.value.status == status


@pytest.mark.parametrize(
    "error_field",
    [True, {"code": "ERR_INVALID_DATA"}, "ERR_INVALID_DATA"],
    ids=["boolean", "object", "string"],
)
def test_error_envelope_forms(
    stub: StubServer, client: ExperienceClient, error_field: object
) -> None:
    stub.responder = lambda request: StubResponse(
        400, {"data": {}, "error": error_field, "message": "events must be a list"}
    )
    with pytest.raises(InvalidData, match="events must be a list") as caught:
        client.create_profile([track_event("a")])
    assert caught.value.code == (None if error_field is True else "ERR_INVALID_DATA")


@pytest.mark.parametrize(
    "envelope",
    [
        {"data": profile_result_json(), "error": None, "message": "ok"},
        {"data": profile_result_json(), "error": False, "message": "ok"},
        {"data": profile_result_json(), "message": "ok"},
        {"data": profile_result_json(), "error": {}},
    ],
    ids=["null", "false", "missing", "empty-object"],
)
def test_success_envelope_forms(
    stub: StubServer, client: ExperienceClient, envelope: dict[str, object]
) -> None:
    stub.responder = lambda request: StubResponse(200, envelope)
    assert client.get_profile("p-1").profile.id == "p-1"


def test_error_flag_in_a_200_answer_is_an_error(stub: StubServer, client: ExperienceClient) -> None:
    stub.responder = lambda request: StubResponse(
        200, {"data": {}, "error": {"code": "ERR_PROFILE_NOT_FOUND"}, "message": "gone"}
    )
    with pytest.raises(ProfileNotFound):
        client.get_profile("p-1")


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"",
        b"[1, 2]",
        b'"ok"',
        b'{"error": null, "message": "ok"}',
        b'{"data": {"profile": {"stableId": "no id"}}, "error": null}',
        b'{"data": {"profile": {"id": "p"}, "experiences": {}}, "error": null}',
        b'{"data": [], "error": null}',
        b"\xff\xfe",
    ],
)
def test_body_that_is_not_the_documented_json_is_a_transport_error(
    stub: StubServer, client: ExperienceClient, body: bytes
) -> None:
    stub.responder = lambda request: StubResponse(200, body)
    with pytest.raises(TransportError) as caught:
        client.get_profile("p-1")
    assert isinstance(caught.value, MalformedResponse)
    assert len(stub.requests) == 1  # a wrong body is not retried


@pytest.mark.parametrize(
    "data",
    [{}, {"profiles": {}}, {"profiles": [{"stableId": "x"}]}, []],
)
def test_batch_answer_of_the_wrong_shape(
    stub: StubServer, client: ExperienceClient, data: object
) -> None:
    stub.responder = lambda request: StubResponse(200, {"data": data, "error": None})
    with pytest.raises(TransportError):
        client.upsert_profiles([track_event("a", anonymous_id="anon-1")])


def test_string_form_of_an_error() -> None:
    error = ProfileNotFound("gone", status=404, code="ERR_PROFILE_NOT_FOUND")
    assert str(error) == "gone (status=404, code=ERR_PROFILE_NOT_FOUND)"
    assert str(TransportError()) == TransportError.default_message


def test_error_messages_do_not_quote_the_body(stub: StubServer, client: ExperienceClient) -> None:
    # A truncated answer can carry a visitor's traits; error messages end up in logs.
    stub.responder = lambda request: StubResponse(
        200, b'{"data": {"profile": {"traits": {"email": "jane@example.com"'
    )
    with pytest.raises(MalformedResponse) as caught:
        client.get_profile("p-1")
    assert "jane@example.com" not in str(caught.value)
    assert "bytes of application/json" in str(caught.value)
