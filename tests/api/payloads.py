"""JSON answers of the Experience API used by the client tests."""

from __future__ import annotations

from typing import Any

from tests.stub_server import RecordedRequest, StubResponse, ok_envelope


def profile_json(profile_id: str = "p-1", **extra: Any) -> dict[str, Any]:
    return {
        "id": profile_id,
        "stableId": profile_id,
        "random": 0.42,
        "audiences": ["aud-1"],
        "traits": {"favAnimal": "fox"},
        "location": {"city": "Berlin", "countryCode": "DE"},
        "session": {
            "id": "sess-1",
            "isReturningVisitor": False,
            "landingPage": {
                "path": "/",
                "url": "https://example.com/",
                "query": {},
                "referrer": "",
                "search": "",
            },
            "count": 1,
            "activeSessionLength": 0,
            "averageSessionLength": 0,
        },
        **extra,
    }


def profile_result_json(profile_id: str = "p-1") -> dict[str, Any]:
    return {
        "profile": profile_json(profile_id),
        "experiences": [
            {
                "experienceId": "exp-1",
                "variantIndex": 1,
                "variants": {"entryA": "entryB"},
                "sticky": True,
            }
        ],
        "changes": [
            {
                "key": "heroTitle",
                "type": "Variable",
                "value": "Welcome back!",
                "meta": {"experienceId": "exp-2", "variantIndex": 1},
            }
        ],
    }


def profile_answer(request: RecordedRequest | None = None) -> StubResponse:
    return ok_envelope(profile_result_json())


def batch_answer(request: RecordedRequest) -> StubResponse:
    """One profile per anonymousId of the batch, as the batch sync endpoint answers."""
    ids: list[str] = []
    for event in request.json()["events"]:
        if event["anonymousId"] not in ids:
            ids.append(event["anonymousId"])
    return ok_envelope({"profiles": [profile_json(i) for i in ids]})
