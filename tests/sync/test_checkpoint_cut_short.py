"""A checkpoint whose last line a crash cut short: resumed runs append after it safely."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from tests.stub_server import RecordedRequest, StubResponse, StubServer, ok_envelope
from tests.sync.helpers import people, run_import, write_jsonl

pytestmark = pytest.mark.django_db

CUT_SHORT = {
    "mid-line": b'{"done":"0123456789abcdef',
    # Entries keep non-ASCII reasons as they are: the cut may fall inside a character.
    "mid-character": b'{"done":"0123","refused":[{"line":1,"reason":"caf\xc3',
}


@pytest.fixture
def api(settings: SettingsWrapper) -> Iterator[StubServer]:
    with StubServer() as stub:
        settings.EXPERIENCE_API_URL = stub.url
        yield stub


def _answering(failing: set[str]) -> Callable[[RecordedRequest], StubResponse]:
    """Accept every batch, except those holding one of ``failing`` (a 503)."""

    def answer(request: RecordedRequest) -> StubResponse:
        events = request.json()["events"]
        if any(event["userId"] in failing for event in events):
            return StubResponse(503, {"data": {}, "error": {"code": "ERR_INTERNAL_SERVER_ERROR"}})
        return ok_envelope({"profiles": [{"id": event["anonymousId"]} for event in events]})

    return answer


def _sent(stub: StubServer) -> list[str]:
    return [event["userId"] for request in stub.requests for event in request.json()["events"]]


@pytest.mark.parametrize("cut", list(CUT_SHORT.values()), ids=list(CUT_SHORT))
def test_a_block_completed_after_a_cut_short_line_is_not_sent_again(
    api: StubServer, tmp_path: Path, cut: bytes
) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(6))  # three blocks of two
    checkpoint = tmp_path / "ckpt"
    args = ("--file", str(source), "--batch-size", "2", "--checkpoint", str(checkpoint),
            "--retries", "0", "--timeout", "5")

    api.responder = _answering({"person-2", "person-4"})  # blocks 2 and 3 fail
    assert run_import(*args).code == 1
    with checkpoint.open("ab") as stream:
        stream.write(cut)  # the crash of a run, while it recorded a block

    api.requests.clear()
    api.responder = _answering({"person-4"})  # block 2 completes now, block 3 fails again
    second = run_import(*args, "--resume")
    assert second.code == 1, second.stderr
    assert sorted(_sent(api)) == ["person-2", "person-3", "person-4", "person-5"]

    api.requests.clear()
    api.responder = _answering(set())
    third = run_import(*args, "--resume")
    assert third.code == 0, third.stderr
    assert "Skipped (completed by an earlier run): 4" in third.stdout
    assert sorted(_sent(api)) == ["person-4", "person-5"]  # block 2 was recorded
