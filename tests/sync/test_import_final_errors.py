"""Final errors that are no refusal of a row's content never count its block as done.

Only the documented refusals of what a row carries (400 ``ERR_INVALID_DATA`` and the like) make
a row ``refused``, kept as completed in the checkpoint. Any other final answer fails the rows,
or stops the import when it would meet every request, and ``--resume`` sends them again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience.models import ProfileMapping
from tests.stub_server import RecordedRequest, StubResponse, StubServer, error_envelope, ok_envelope
from tests.sync.helpers import people, read_errors, run_import, write_jsonl

pytestmark = pytest.mark.django_db

FAST = ("--retries", "0", "--backoff", "0.001", "--timeout", "5")


@pytest.fixture
def api(settings: SettingsWrapper) -> Iterator[StubServer]:
    with StubServer() as stub:
        settings.EXPERIENCE_API_URL = stub.url
        yield stub


def _accept(request: RecordedRequest) -> StubResponse:
    events = request.json()["events"]
    return ok_envelope({"profiles": [{"id": event["anonymousId"]} for event in events]})


def _sent_ids(stub: StubServer) -> list[str]:
    return [event["userId"] for request in stub.requests for event in request.json()["events"]]


NOT_THE_API = {
    "html 404": StubResponse(404, b"<html>Not Found</html>", {"Content-Type": "text/html"}),
    "405": StubResponse(405, b"Method Not Allowed", {"Content-Type": "text/plain"}),
    "410": error_envelope(410, "ERR_GONE", "gone"),
    "301": StubResponse(301, b"", {"Location": "https://elsewhere.example/v2/"}),
}


@pytest.mark.parametrize("answer", list(NOT_THE_API.values()), ids=list(NOT_THE_API))
def test_an_answer_from_outside_the_api_stops_the_import_and_resume_sends_every_row(
    api: StubServer, tmp_path: Path, answer: StubResponse
) -> None:
    rows = people(100)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    args = ("--file", str(source), "--checkpoint", str(tmp_path / "ckpt"),
            "--errors", str(errors), *FAST)
    api.responder = lambda request: answer  # a proxy or a gateway answering, not the API

    first = run_import(*args)
    assert first.code == 1
    assert "Stopped early: experience refused the import" in first.stdout
    assert len(api.requests) == 1  # the same for every row: nothing more was sent
    assert {entry["kind"] for entry in read_errors(errors)} == {"failed"}

    api.requests.clear()
    api.responder = _accept  # the gateway is fixed
    second = run_import(*args, "--resume")
    assert second.code == 0, second.stderr
    assert "Profiles sent: 100" in second.stdout
    assert sorted(_sent_ids(api)) == sorted(row["id"] for row in rows)
    assert read_errors(errors) == []


UNDOCUMENTED = {
    "409": error_envelope(409, "ERR_CONFLICT", "conflict"),
    "404 with another code": error_envelope(404, "ERR_SOMETHING_NEW", "not here"),
}


@pytest.mark.parametrize("answer", list(UNDOCUMENTED.values()), ids=list(UNDOCUMENTED))
def test_an_undocumented_final_error_fails_the_rows_and_resume_sends_them(
    api: StubServer, tmp_path: Path, answer: StubResponse
) -> None:
    rows = people(6)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    args = ("--file", str(source), "--batch-size", "2", "--checkpoint", str(tmp_path / "ckpt"),
            "--errors", str(errors), *FAST)

    def second_batch_refused(request: RecordedRequest) -> StubResponse:
        if any(event["userId"] == "person-2" for event in request.json()["events"]):
            return answer
        return _accept(request)

    api.responder = second_batch_refused
    first = run_import(*args)
    assert first.code == 1
    assert "Stopped early" not in first.stdout  # the other batches were still sent
    assert "Profiles sent: 4" in first.stdout and "Failures: 2" in first.stdout
    assert sorted((entry["line"], entry["kind"]) for entry in read_errors(errors)) == [
        (3, "failed"), (4, "failed")
    ]
    assert len(api.requests) == 3  # no bisecting: the answer says nothing about one row

    api.requests.clear()
    api.responder = _accept
    second = run_import(*args, "--resume")
    assert second.code == 0, second.stderr
    assert "Skipped (completed by an earlier run): 4" in second.stdout
    assert sorted(_sent_ids(api)) == ["person-2", "person-3"]
    assert ProfileMapping.objects.count() == 6
