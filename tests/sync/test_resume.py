"""``--resume`` skips a block only when exactly the same input was completed before."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model

from django_experience.api.errors import ServerError
from django_experience.emulator.handle import EmulatorHandle
from django_experience.sync.checkpoint import Checkpoint
from django_experience.sync.pipeline import ErrorSink, Pipeline, PipelineOptions, Summary
from django_experience.sync.rows import Batch, Rejected, Row
from django_experience.sync.sources import UsersSource
from django_experience.sync.targets import ImportTarget, Item
from tests.sync.helpers import profiles_by_user, run_import, write_jsonl

IDENTITY = {"source": "test", "batch_size": 2}


class RecordingTarget(ImportTarget):
    """Records what it sends; fails (503) any batch holding an id of ``failing``."""

    name = "recording"

    def __init__(self, failing: Sequence[str] = ()) -> None:
        self.failing = set(failing)
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        return [Item(row, {}) for row in batch.rows], []

    def send(self, items: Sequence[Item]) -> Any:
        if any(item.row.external_id in self.failing for item in items):
            raise ServerError(status=503)
        with self.lock:
            self.sent.extend(item.row.external_id for item in items)
        return None


def _run(
    rows: Any, target: ImportTarget, path: Path, *, resume: bool, batch_size: int = 2
) -> Summary:
    checkpoint = Checkpoint(str(path), IDENTITY)
    if resume:
        checkpoint.load()
    checkpoint.start()
    try:
        pipeline = Pipeline(
            rows, target, PipelineOptions(batch_size=batch_size, max_retries=0),
            errors=ErrorSink(io.StringIO(), None), checkpoint=checkpoint,
        )
        return pipeline.run()
    finally:
        checkpoint.close()


def _rows(traits: dict[int, dict[str, Any]] | None = None, count: int = 6) -> list[Row]:
    return [Row(n + 1, f"r{n}", (traits or {}).get(n, {"n": n})) for n in range(count)]


def test_a_line_fixed_before_resuming_is_sent(emulator: EmulatorHandle, tmp_path: Path) -> None:
    # The reported case: line 2 of 5 is bad JSON; the user fixes it and resumes.
    rows: list[Any] = [{"id": f"r{n}", "traits": {"n": n}} for n in range(5)]
    lines: list[Any] = [*rows]
    lines[1] = '{"id": "r1", "traits": {"n": 1}'  # the closing brace is missing
    source = write_jsonl(tmp_path / "people.jsonl", lines)
    first = run_import("--file", str(source))
    assert first.code == 1 and "line 2: rejected: bad JSON" in first.stderr
    assert "r1" not in profiles_by_user(emulator)

    write_jsonl(source, rows)
    second = run_import("--file", str(source), "--resume")
    assert second.code == 0, second.stderr
    assert sorted(profiles_by_user(emulator)) == [f"r{n}" for n in range(5)]


def test_an_edited_block_is_sent_again_and_only_that_one(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    first = RecordingTarget()
    assert _run(_rows(), first, path, resume=False).sent == 6

    edited = RecordingTarget()
    summary = _run(_rows({3: {"n": 3, "plan": "pro"}}), edited, path, resume=True)
    assert edited.sent == ["r2", "r3"]  # the block of lines 3-4
    assert (summary.sent, summary.skipped) == (2, 4)


def test_lines_inserted_above_shift_every_block_so_everything_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    _run(_rows(), RecordingTarget(), path, resume=False)
    shifted = [Row(1, "new", {}), *(Row(row.line + 1, row.external_id, row.traits)
                                    for row in _rows())]
    target = RecordingTarget()
    summary = _run(shifted, target, path, resume=True)
    assert sorted(target.sent) == sorted(["new", *(f"r{n}" for n in range(6))])
    assert summary.skipped == 0


def test_users_deleted_between_runs_leave_no_one_unsent(db: None, tmp_path: Path) -> None:
    users = [get_user_model().objects.create_user(f"u{n}") for n in range(6)]
    ids = [str(user.pk) for user in users]
    path = tmp_path / "import.checkpoint"
    first = RecordingTarget(failing=[ids[3]])  # the block of users 2 and 3 fails
    summary = _run(UsersSource(), first, path, resume=False)
    assert summary.failed == 2

    users[0].delete()  # every later user moves up one position
    second = RecordingTarget()
    _run(UsersSource(), second, path, resume=True)
    assert set(first.sent) | set(second.sent) >= set(ids[1:])


def test_the_checkpoint_is_appended_one_line_per_completed_block(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    _run(_rows(), RecordingTarget(failing=["r2"]), path, resume=False)
    lines = path.read_text().splitlines()
    assert json.loads(lines[0])["identity"] == IDENTITY
    assert len(lines) == 1 + 2  # blocks 1 and 3; block 2 failed
    # A crash while writing leaves a partial line: it is ignored, the rest is kept.
    with path.open("a") as stream:
        stream.write('{"done": "abc')
    target = RecordingTarget()
    summary = _run(_rows(), target, path, resume=True)
    assert target.sent == ["r2", "r3"] and summary.skipped == 4


def test_a_checkpoint_of_the_old_format_skips_nothing(tmp_path: Path) -> None:
    path = tmp_path / "import.checkpoint"
    path.write_text(json.dumps({"identity": IDENTITY, "completed_batches": [[0, 2]]}))
    target = RecordingTarget()
    summary = _run(_rows(), target, path, resume=True)
    assert summary.skipped == 0 and len(target.sent) == 6


@pytest.mark.parametrize("resume", [False, True])
def test_a_missing_checkpoint_starts_afresh(tmp_path: Path, resume: bool) -> None:
    target = RecordingTarget()
    summary = _run(_rows(), target, tmp_path / "none.checkpoint", resume=resume)
    assert summary.sent == 6 and summary.skipped == 0
