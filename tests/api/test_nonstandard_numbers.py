"""NaN, Infinity and -Infinity are not JSON, though Python's json reads them. In an answer each
becomes null (as JSON.stringify writes them): the rest of the answer is used, and what is
written from it (``{% experience_json %}``) stays JSON a browser's JSON.parse accepts."""

from __future__ import annotations

import json

import pytest

from django_experience.api import ExperienceClient
from django_experience.api.types import ProfileResult
from django_experience.merge_tags import render_merge_tag
from tests.api.payloads import profile_result_json
from tests.stub_server import StubResponse, StubServer


def _answer_with_constants() -> bytes:
    data = profile_result_json("p-1")
    data["profile"]["traits"] = {"score": "NAN", "top": "INF", "low": "-INF", "name": "NaN"}
    text = json.dumps({"data": data, "error": None, "message": "ok"})
    for word, constant in (('"NAN"', "NaN"), ('"INF"', "Infinity"), ('"-INF"', "-Infinity")):
        text = text.replace(word, constant)
    return text.encode("utf-8")


def test_non_json_numbers_in_an_answer_become_null(
    stub: StubServer, client: ExperienceClient
) -> None:
    body = _answer_with_constants()
    assert b"NaN," in body and b"-Infinity" in body  # what the stub really sends
    stub.responder = lambda request: StubResponse(200, body)
    result = client.get_profile("p-1")
    traits = result.profile.traits
    assert traits == {"score": None, "top": None, "low": None, "name": "NaN"}
    assert result.experiences[0].variant_index == 1  # the rest of the answer is used
    json.dumps(result.profile.raw, allow_nan=False)  # strict JSON can be written from it
    assert render_merge_tag(result.profile.raw, "traits.score", "FB") == "FB"


def test_numbers_too_large_for_a_float_become_null_too(
    stub: StubServer, client: ExperienceClient
) -> None:
    # 1e400 is JSON, but it reads as an infinity: JSON.parse makes it Infinity, which
    # JSON.stringify writes as null. An index of 1e400 raised OverflowError, not a typed error.
    data = profile_result_json("p-1")
    data["profile"]["traits"] = {"big": "BIG", "small": "SMALL", "tiny": 1e-400}
    data["experiences"].append({"experienceId": "e-huge", "variantIndex": "BIG", "variants": {}})
    text = json.dumps({"data": data, "error": None, "message": "ok"})
    body = text.replace('"BIG"', "1e400").replace('"SMALL"', "-1E+400").encode("utf-8")
    stub.responder = lambda request: StubResponse(200, body)
    result = client.get_profile("p-1")
    assert result.profile.traits == {"big": None, "small": None, "tiny": 0.0}
    assert result.experiences[0].variant_index == 1
    assert result.experiences[-1].variant_index == 0  # null: the baseline, as when missing
    json.dumps(result.profile.raw, allow_nan=False)


def test_a_document_with_an_infinite_index_is_refused_as_the_wrong_shape() -> None:
    # A caller's own document (not decoded by the client) gets the shape error, not OverflowError.
    data = profile_result_json("p-1")
    data["experiences"][0]["variantIndex"] = float("inf")
    with pytest.raises(ValueError, match=r"variantIndex must be a finite number, got inf"):
        ProfileResult.from_json(data)
