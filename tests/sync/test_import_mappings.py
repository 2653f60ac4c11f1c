"""Mappings stored by an import pair each row with its own profile, whatever the answer order."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience.models import ProfileMapping
from tests.stub_server import RecordedRequest, StubResponse, StubServer, ok_envelope
from tests.sync.helpers import run_import, write_jsonl

pytestmark = pytest.mark.django_db

Renames = dict[str, str]  # external id -> the profile id the stub answers for that row


def _profile(profile_id: str) -> dict[str, Any]:
    return {"id": profile_id, "stableId": profile_id, "random": 0.5, "audiences": [],
            "traits": {}, "location": {}, "session": None}


def _reversing(renames: Renames) -> Callable[[RecordedRequest], StubResponse]:
    """One profile per unique anonymousId, in REVERSE order; a row of ``renames`` comes back
    under another id, as when an identify merges it into an existing profile."""

    def answer(request: RecordedRequest) -> StubResponse:
        ids: dict[str, str] = {}
        for event in request.json()["events"]:
            ids.setdefault(event["anonymousId"], renames.get(event["userId"], event["anonymousId"]))
        return ok_envelope({"profiles": [_profile(pid) for pid in reversed(ids.values())]})

    return answer


@pytest.fixture
def api(settings: SettingsWrapper) -> Iterator[StubServer]:
    with StubServer() as stub:
        settings.EXPERIENCE_API_URL = stub.url
        yield stub


def _sent(stub: StubServer) -> dict[str, str]:
    """external id -> the anonymousId the import sent for it."""
    return {event["userId"]: event["anonymousId"]
            for request in stub.requests for event in json.loads(request.body)["events"]}


def _mappings() -> dict[str, str]:
    return {
        str(external_id): profile_id
        for external_id, profile_id in ProfileMapping.objects.values_list(
            "external_id", "profile_id"
        )
    }


def test_an_answer_in_reverse_order_maps_each_row_to_its_own_profile(
    api: StubServer, tmp_path: Path
) -> None:
    api.responder = _reversing({})
    rows = [{"id": f"c{n}", "traits": {"n": n}} for n in range(5)]
    assert run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows))).code == 0
    assert _mappings() == _sent(api)


def test_a_merged_row_is_mapped_to_its_survivor_whatever_the_order(
    api: StubServer, tmp_path: Path
) -> None:
    api.responder = _reversing({"c1": "survivor-of-c1"})
    rows = [{"id": f"c{n}", "traits": {}} for n in range(3)]
    assert run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows))).code == 0
    sent = _sent(api)
    assert _mappings() == {"c0": sent["c0"], "c1": "survivor-of-c1", "c2": sent["c2"]}


def test_two_merged_rows_in_one_batch_are_asked_about_one_at_a_time(
    api: StubServer, tmp_path: Path
) -> None:
    api.responder = _reversing({"c0": "survivor-a", "c2": "survivor-b"})
    rows = [{"id": f"c{n}", "traits": {}} for n in range(3)]
    assert run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows))).code == 0
    assert _mappings() == {"c0": "survivor-a", "c1": _sent(api)["c1"], "c2": "survivor-b"}
    sizes = [len(json.loads(request.body)["events"]) for request in api.requests]
    assert sizes == [3, 1, 1]
    # The repeated rows carried the same message ids.
    first = {e["userId"]: e["messageId"] for e in json.loads(api.requests[0].body)["events"]}
    for request in api.requests[1:]:
        [event] = json.loads(request.body)["events"]
        assert event["messageId"] == first[event["userId"]]


def test_rows_left_ambiguous_are_not_guessed(api: StubServer, tmp_path: Path) -> None:
    answers = iter(["batch"])

    def answer(request: RecordedRequest) -> StubResponse:
        if next(answers, None) == "batch":
            return _reversing({"c0": "survivor-a", "c2": "survivor-b"})(request)
        return StubResponse(503, {"data": {}, "error": {"code": "ERR_INTERNAL_SERVER_ERROR"},
                                  "message": "down"})

    api.responder = answer
    rows = [{"id": f"c{n}", "traits": {}} for n in range(3)]
    result = run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert result.code == 0
    assert _mappings() == {"c1": _sent(api)["c1"]}  # delivered; c0 and c2 just not mapped
    assert "Profiles sent: 3\nSent but not mapped: 2\n" in result.stdout


@pytest.mark.parametrize(
    ("sent", "returned", "expected"),
    [
        (["a", "b"], ["b", "a"], {"a": "a", "b": "b"}),
        (["a", "b", "a"], ["x", "b"], {"a": "x", "b": "b"}),
        (["a", "b"], ["y", "x"], {}),
        (["a", "b"], ["a"], {"a": "a"}),  # b was refused or not answered: left alone
        ([], [], {}),
    ],
)
def test_match_profiles(sent: list[str], returned: list[str], expected: dict[str, str]) -> None:
    from django_experience.sync.targets import match_profiles

    assert match_profiles(sent, returned) == expected


@pytest.mark.parametrize("answered", ["x" * 129, "not an id", "a;b"])
def test_a_row_answered_under_an_unusable_profile_id_is_sent_but_not_mapped(
    api: StubServer, tmp_path: Path, answered: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Kept, the id would be written to visitors' cookies quoted (and refused when it comes
    # back), and a longer one than the column holds fails the batch's commit on PostgreSQL.
    api.responder = _reversing({"c1": answered})
    rows = [{"id": f"c{n}", "traits": {}} for n in range(3)]
    with caplog.at_level("WARNING", logger="django_experience.sync"):
        result = run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert result.code == 0, result.stderr
    sent = _sent(api)
    assert _mappings() == {"c0": sent["c0"], "c2": sent["c2"]}
    assert "Profiles sent: 3\nSent but not mapped: 1\n" in result.stdout
    assert "Failures: 0\n" in result.stdout
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "django_experience.sync"]
    assert "1 profile id(s)" in warning and answered not in warning


def test_unusable_profile_ids_in_every_batch_are_logged_once_and_counted(
    api: StubServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An API (or a proxy) answering so answers every batch so: one line, not one per batch.
    api.responder = _reversing({f"c{n}": f"bad id {n}" for n in range(0, 12, 3)})
    rows = [{"id": f"c{n}", "traits": {}} for n in range(12)]
    with caplog.at_level("WARNING", logger="django_experience.sync"):
        result = run_import(
            "--file", str(write_jsonl(tmp_path / "c.jsonl", rows)), "--batch-size", "3"
        )
    assert result.code == 0, result.stderr
    assert len(api.requests) == 4
    assert len(_mappings()) == 8
    assert "Profiles sent: 12\nSent but not mapped: 4\n" in result.stdout
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "django_experience.sync"]
    assert "1 profile id(s)" in warning and "counted in the summary" in warning


def test_a_fully_mapped_import_reports_no_unmapped_rows(api: StubServer, tmp_path: Path) -> None:
    api.responder = _reversing({})
    rows = [{"id": f"c{n}", "traits": {}} for n in range(4)]
    result = run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert result.code == 0 and "Profiles sent: 4\n" in result.stdout
    assert "not mapped" not in result.stdout


def test_a_stored_mapping_whose_id_is_not_one_is_replaced_by_the_derived_id(
    api: StubServer, tmp_path: Path
) -> None:
    # Sent, the id would come back unusable and leave the person unmapped on every import.
    ProfileMapping.objects.create(
        external_id="c0", profile_id="legacy id;1", organization_id="test-org"
    )
    api.responder = _reversing({})
    rows = [{"id": f"c{n}", "traits": {}} for n in range(2)]
    result = run_import("--file", str(write_jsonl(tmp_path / "c.jsonl", rows)))
    assert result.code == 0, result.stderr
    sent = _sent(api)
    assert "legacy id;1" not in sent.values()
    assert _mappings() == sent and ProfileMapping.objects.count() == 2
    assert "not mapped" not in result.stdout
