"""NaN, Infinity and -Infinity are not JSON, though Python's json reads them. In an answer each
becomes null (as JSON.stringify writes them): the rest of the answer is used, and what is
written from it (``{% experience_json %}``) stays JSON a browser's JSON.parse accepts."""

from __future__ import annotations

import json

from django_experience.api import ExperienceClient
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
