"""An import commits the mappings of several batches at once, and records a block done in the
checkpoint only after the commit that made its mappings last."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from django_experience.api.errors import ProfileNotFound
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping
from django_experience.sync import commits
from django_experience.sync.checkpoint import Checkpoint
from django_experience.sync.commits import GroupedCommits
from django_experience.sync.pipeline import ErrorSink, Pipeline, PipelineOptions, Summary
from django_experience.sync.rows import Batch, Rejected, Row
from django_experience.sync.targets import ExperienceTarget, ImportTarget, Item, TargetOptions
from tests.sync.helpers import people, run_import, write_jsonl

IDENTITY = {"source": "test", "batch_size": 2}


@pytest.fixture(autouse=True)
def _no_commit_by_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commits come by count or by event here, never because a loaded machine was slow."""
    monkeypatch.setattr(commits, "MAX_SECONDS", 60.0)


class Log:
    """What happened, in order: transactions begun, committed, rolled back; blocks recorded."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.lock = threading.Lock()

    def add(self, event: str) -> None:
        with self.lock:
            self.events.append(event)

    def count(self, event: str) -> int:
        return sum(1 for seen in self.events if seen == event)


class FakeTransaction:
    def __init__(self, log: Log) -> None:
        self.log = log

    def __enter__(self) -> None:
        self.log.add("begin")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.log.add("commit" if kind is None else "rollback")


def test_batches_are_recorded_after_the_commit_that_covers_them() -> None:
    log = Log()
    grouped: GroupedCommits[str] = GroupedCommits(
        lambda: FakeTransaction(log), lambda batch: log.add(f"done {batch}"),
        max_seconds=60, max_batches=3,
    )
    assert grouped.seconds_left() is None
    for batch in ("a", "b", "c", "d"):
        grouped.open()
        log.add(f"wrote {batch}")
        grouped.done(batch)
    left = grouped.seconds_left()
    assert left is not None and 0 < left <= 60
    grouped.commit()
    assert log.events == [
        "begin", "wrote a", "wrote b", "wrote c", "commit", "done a", "done b", "done c",
        "begin", "wrote d", "commit", "done d",
    ]


def test_a_batch_done_now_is_committed_at_once_and_a_rollback_records_nothing() -> None:
    log = Log()
    grouped: GroupedCommits[str] = GroupedCommits(
        lambda: FakeTransaction(log), lambda batch: log.add(f"done {batch}"), max_seconds=60
    )
    grouped.open()
    grouped.done("a")
    grouped.open()
    grouped.done("b", now=True)
    grouped.open()
    grouped.done("c")
    grouped.roll_back(RuntimeError("the database went away"))
    assert log.events == ["begin", "commit", "done a", "done b", "begin", "rollback"]


def test_without_a_transaction_each_batch_is_recorded_at_once() -> None:
    recorded: list[str] = []
    grouped: GroupedCommits[str] = GroupedCommits(lambda: None, recorded.append)
    grouped.open()
    grouped.done("a")
    assert recorded == ["a"] and grouped.seconds_left() is None


class LoggingTarget(ImportTarget):
    """Sends nothing anywhere; logs its transactions and completions. ``stale`` rows are
    refused as gone until recovered; ``broken`` rows make ``complete`` fail; ``held`` rows wait
    for ``release`` before they are sent."""

    name = "logging"

    def __init__(
        self,
        log: Log,
        *,
        stale: Sequence[str] = (),
        broken: Sequence[str] = (),
        held: Sequence[str] = (),
    ) -> None:
        self.log = log
        self.stale, self.broken, self.held = set(stale), set(broken), set(held)
        self.release = threading.Event()
        self.sending_held = threading.Event()

    def transaction(self) -> FakeTransaction:
        return FakeTransaction(self.log)

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        return [Item(row, {"id": row.external_id}) for row in batch.rows], []

    def send(self, items: Sequence[Item]) -> Any:
        ids = {item.row.external_id for item in items}
        if ids & self.held:
            self.sending_held.set()
            assert self.release.wait(10)
        if any(item.payload["id"] in self.stale for item in items):
            raise ProfileNotFound("gone", status=404, code="ERR_PROFILE_NOT_FOUND")
        return None

    def splittable(self, exc: BaseException) -> bool:
        return isinstance(exc, ProfileNotFound)

    def recover(self, item: Item, exc: BaseException) -> Item | None:
        return Item(item.row, {"id": f"fresh-{item.row.external_id}"})

    def complete(self, items: Sequence[Item], answer: Any) -> None:
        for item in items:
            if item.row.external_id in self.broken:
                raise RuntimeError("the database refused the write")
            self.log.add(f"stored {item.row.external_id}")


def _pipeline(
    rows: list[Row], target: ImportTarget, checkpoint: Checkpoint, **options: Any
) -> Pipeline:
    return Pipeline(
        rows, target, PipelineOptions(batch_size=2, max_retries=0, **options),
        errors=ErrorSink(io.StringIO(), None), checkpoint=checkpoint,
    )


def _rows(count: int) -> list[Row]:
    return [Row(n + 1, f"r{n}", {"n": n}) for n in range(count)]


def _recorded(path: Path) -> int:
    """How many blocks the checkpoint file records done."""
    checkpoint = Checkpoint(str(path), IDENTITY)
    checkpoint.load()
    return len(checkpoint._done)


def _checkpoint(path: Path) -> Checkpoint:
    checkpoint = Checkpoint(str(path), IDENTITY)
    checkpoint.start()
    return checkpoint


def test_an_import_commits_once_for_many_batches(tmp_path: Path) -> None:
    log, path = Log(), tmp_path / "ck"
    checkpoint = _checkpoint(path)
    try:
        summary = _pipeline(_rows(20), LoggingTarget(log), checkpoint).run()
    finally:
        checkpoint.close()
    assert summary.ok and summary.sent == 20
    assert log.count("begin") == log.count("commit") == 1  # ten batches, one commit (was ten)
    assert log.events[-1] == "commit"
    assert _recorded(path) == 10


def test_a_failure_rolls_back_the_open_batches_and_leaves_them_for_resume(
    tmp_path: Path,
) -> None:
    log, path = Log(), tmp_path / "ck"
    checkpoint = _checkpoint(path)
    try:
        with pytest.raises(RuntimeError, match="refused the write"):
            _pipeline(_rows(10), LoggingTarget(log, broken=["r6"]), checkpoint).run()
    finally:
        checkpoint.close()
    assert log.events[-1] == "rollback" and "commit" not in log.events
    assert _recorded(path) == 0  # their mappings were rolled back: none counts as done


def test_a_batch_with_a_recovered_profile_is_committed_at_once(tmp_path: Path) -> None:
    # Sent again after a crash, a recovered row would get yet another fresh profile.
    log, path = Log(), tmp_path / "ck"
    checkpoint = _checkpoint(path)
    target = LoggingTarget(log, stale=["r2"], broken=["r6"])
    try:
        with pytest.raises(RuntimeError):
            _pipeline(_rows(10), target, checkpoint).run()
    finally:
        checkpoint.close()
    # (Batches finished together complete in any order: r4's may join the commit.)
    assert log.count("commit") == 1 and log.events[-1] == "rollback"
    assert log.events.index("commit") > log.events.index("stored r3")
    assert _recorded(path) >= 2  # the recovered row's block and the one before it at least


def test_slow_answers_commit_what_waits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An import stalled on the network must not hold the database's write lock meanwhile.
    monkeypatch.setattr(commits, "MAX_SECONDS", 0.05)
    log, path = Log(), tmp_path / "ck"
    checkpoint = _checkpoint(path)
    target = LoggingTarget(log, held=["r4"])
    result: list[Summary] = []
    runner = threading.Thread(
        target=lambda: result.append(_pipeline(_rows(6), target, checkpoint).run())
    )
    runner.start()
    try:
        assert target.sending_held.wait(10)
        for _ in range(500):  # the first two batches are committed while r4 is held
            if _recorded(path) == 2:
                break
            threading.Event().wait(0.01)
        assert _recorded(path) == 2
        assert log.events[-1] == "commit" and "rollback" not in log.events
        assert sorted(event for event in log.events if event.startswith("stored")) == [
            "stored r0", "stored r1", "stored r2", "stored r3"
        ]
    finally:
        target.release.set()
        runner.join(10)
        checkpoint.close()
    assert result and result[0].ok and _recorded(path) == 3


def test_a_source_that_may_block_commits_each_batch(tmp_path: Path) -> None:
    log, path = Log(), tmp_path / "ck"
    checkpoint = _checkpoint(path)
    try:
        _pipeline(_rows(6), LoggingTarget(log), checkpoint, group_commits=False).run()
    finally:
        checkpoint.close()
    assert "begin" not in log.events  # as before: each completion commits on its own
    assert log.count("stored r5") == 1 and _recorded(path) == 3  # and is recorded at once


# With the database and the emulator ----------------------------------------------------------


class FailingAfter(ExperienceTarget):
    """The real target, whose mappings cannot be stored from the row ``crm-7`` on."""

    def complete(self, items: Sequence[Item], answer: Any) -> None:
        if any(item.row.external_id == "crm-7" for item in items):
            raise RuntimeError("the database refused the write")
        super().complete(items, answer)


@pytest.mark.django_db
def test_after_a_failure_resume_maps_everyone_to_one_profile_each(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    rows = [Row(n + 1, f"crm-{n}", {"n": n}) for n in range(10)]
    path = tmp_path / "ck"
    checkpoint = _checkpoint(path)
    try:
        with pytest.raises(RuntimeError):
            _pipeline(rows, FailingAfter(TargetOptions()), checkpoint).run()
    finally:
        checkpoint.close()
    assert not ProfileMapping.objects.exists()  # the open batches' mappings were rolled back
    assert _recorded(path) == 0
    assert len(emulator.profiles()) >= 8  # crm-0 .. crm-7 at least were sent

    checkpoint = Checkpoint(str(path), IDENTITY)
    checkpoint.load()
    checkpoint.start()
    try:
        summary = _pipeline(rows, ExperienceTarget(TargetOptions()), checkpoint).run()
    finally:
        checkpoint.close()
    assert summary.ok and summary.skipped == 0
    mappings = {
        str(external_id): profile_id
        for external_id, profile_id in ProfileMapping.objects.values_list(
            "external_id", "profile_id"
        )
    }
    assert sorted(mappings) == sorted(f"crm-{n}" for n in range(10))
    assert len(emulator.profiles()) == 10  # sent again, nobody got a second profile
    assert set(mappings.values()) == {profile["id"] for profile in emulator.profiles()}


@pytest.mark.django_db
def test_the_command_stores_every_mapping(emulator: EmulatorHandle, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(120))
    result = run_import("--file", str(source), "--workers", "2")
    assert result.code == 0, result.stderr
    assert ProfileMapping.objects.count() == 120


@pytest.mark.django_db
@pytest.mark.parametrize("from_stdin", [False, True])
def test_only_a_file_import_groups_its_commits(
    emulator: EmulatorHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, from_stdin: bool
) -> None:
    # stdin may block between rows: a transaction held open meanwhile would hold the lock.
    opened: list[object] = []
    real = ExperienceTarget.transaction

    def counting(self: ExperienceTarget) -> Any:
        opened.append(self)
        return real(self)

    monkeypatch.setattr(ExperienceTarget, "transaction", counting)
    source = write_jsonl(tmp_path / "people.jsonl", people(10))
    if from_stdin:
        result = run_import(
            "--file", "-", "--format", "jsonl", stdin=io.BytesIO(source.read_bytes())
        )
    else:
        result = run_import("--file", str(source))
    assert result.code == 0, result.stderr
    assert ProfileMapping.objects.count() == 10
    assert len(opened) == (0 if from_stdin else 1)
