"""The pipeline's streaming window and the progress display."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django_experience.api.errors import InvalidData, ServerError
from django_experience.sync.pipeline import ErrorSink, Pipeline, PipelineOptions
from django_experience.sync.progress import Progress
from django_experience.sync.rows import Batch, Rejected, Row
from django_experience.sync.targets import ImportTarget, Item


class CountingSource:
    """Yields rows lazily and counts how many were pulled."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.pulled = 0

    def __iter__(self) -> Iterator[Row | Rejected]:
        for n in range(self.count):
            self.pulled += 1
            yield Row(n + 1, f"id-{n}", {"n": n})


class HeldTarget(ImportTarget):
    """A destination whose sends wait until released (to freeze the pipeline mid-run)."""

    name = "held"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.sent: list[str] = []
        self.lock = threading.Lock()

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        return [Item(row, {"id": row.external_id}) for row in batch.rows], []

    def send(self, items: Sequence[Item]) -> Any:
        assert self.release.wait(10)
        with self.lock:
            self.sent.extend(item.row.external_id for item in items)
        return None


def test_reading_stays_within_the_in_flight_window() -> None:
    source = CountingSource(10_000)
    target = HeldTarget()
    options = PipelineOptions(batch_size=10, workers=2)
    pipeline = Pipeline(source, target, options, errors=ErrorSink(io.StringIO(), None))
    runner = threading.Thread(target=pipeline.run)
    runner.start()
    try:
        threading.Event().wait(0.3)
        # 2 workers -> at most 4 batches in flight or waiting, plus the batch being built.
        assert source.pulled <= (4 + 1) * 10 + 1
    finally:
        target.release.set()
        runner.join(30)
    assert source.pulled == 10_000
    assert sorted(target.sent) == sorted(f"id-{n}" for n in range(10_000))
    assert pipeline.summary.sent == 10_000


def test_progress_bar_on_a_terminal_shows_rate_and_eta() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total=1000, unit="bytes", tty=True, interval=0)
    progress.started -= 10  # ten seconds in: 25% done -> 30 s to go
    progress.update(position=250, rows=50, sent=40)
    progress.close()
    text = stream.getvalue()
    assert text.startswith("\r[")
    assert "25.0%" in text and "rows/s" in text and "ETA 0:00:30" in text
    assert text.endswith("\n")


def test_a_message_during_the_bar_gets_its_own_line() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total=100, unit="bytes", tty=True, interval=0)
    errors = ErrorSink(stream, None, before_console=progress.clear)
    progress.update(position=10, rows=1, sent=0)
    errors.report(3, "bad JSON", "{", None, "rejected")
    assert stream.getvalue().endswith("\r\033[Kline 3: rejected: bad JSON\n")


def test_progress_lines_without_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total=None, unit="rows", tty=False, interval=0)
    progress.update(position=5, rows=5, sent=5)
    progress.update(position=9, rows=9, sent=9)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[1].startswith("9 rows read, 9 sent")
    assert "\r" not in stream.getvalue()


class PickyTarget(ImportTarget):
    """Refuses any request holding the row "bad"; fails the first two requests with a 503."""

    name = "picky"

    def __init__(self) -> None:
        self.calls = 0
        self.accepted: list[str] = []

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        return [Item(row, {}) for row in batch.rows], []

    def send(self, items: Sequence[Item]) -> Any:
        self.calls += 1
        if self.calls <= 2:
            raise ServerError(status=503)
        if any(item.row.external_id == "bad" for item in items):
            raise InvalidData("bad event", status=400, code="ERR_INVALID_DATA")
        self.accepted.extend(item.row.external_id for item in items)


def test_refused_rows_are_isolated_and_transient_errors_retried() -> None:
    rows = [Row(n + 1, "bad" if n == 6 else f"id-{n}", {}) for n in range(16)]
    target = PickyTarget()
    console = io.StringIO()
    pipeline = Pipeline(
        rows,
        target,
        PipelineOptions(batch_size=16, max_retries=3, backoff=0.001),
        errors=ErrorSink(console, None),
    )
    summary = pipeline.run()
    assert sorted(target.accepted) == sorted(f"id-{n}" for n in range(16) if n != 6)
    assert (summary.sent, summary.rejected, summary.failed, summary.retries) == (15, 1, 0, 2)
    assert console.getvalue().startswith("line 7 (id bad): refused: InvalidData: bad event")


class QuickTarget(ImportTarget):
    """Accepts everything at once."""

    name = "quick"

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        return [Item(row, {}) for row in batch.rows], []

    def send(self, items: Sequence[Item]) -> Any:
        return None


def _distinct_rows(count: int) -> Iterator[Row]:
    for n in range(count):
        yield Row(n + 1, f"customer-{n:08d}@example.com", {})


def test_no_per_profile_state_is_left_after_the_batches_finished() -> None:
    pipeline = Pipeline(
        _distinct_rows(5_000), QuickTarget(), PipelineOptions(batch_size=10, workers=3),
        errors=ErrorSink(io.StringIO(), None),
    )
    summary = pipeline.run()
    assert summary.sent == 5_000
    assert pipeline._keys == {} and pipeline._batch_keys == {}


def test_memory_stays_flat_with_the_number_of_distinct_ids() -> None:
    import gc
    import tracemalloc

    def retained(count: int) -> int:
        gc.collect()
        tracemalloc.start()
        try:
            pipeline = Pipeline(
                _distinct_rows(count), QuickTarget(), PipelineOptions(batch_size=50, workers=2),
                errors=ErrorSink(io.StringIO(), None),
            )
            pipeline.run()
            gc.collect()
            current, _ = tracemalloc.get_traced_memory()
            del pipeline
            return current
        finally:
            tracemalloc.stop()

    small, large = retained(1_000), retained(30_000)
    # A byte per extra row would be 29 kB; the leak was about a hundred.
    assert large - small < 100_000, (small, large)


class RefusingTarget(QuickTarget):
    """Answers every request with 401, as a wrong API key would."""

    def __init__(self) -> None:
        self.calls = 0

    def send(self, items: Sequence[Item]) -> Any:
        self.calls += 1
        raise ServerError("bad key", status=401)


def test_a_refused_configuration_stops_reading_and_sending() -> None:
    source = CountingSource(1_000)
    target = RefusingTarget()
    errors = io.StringIO()
    pipeline = Pipeline(
        source, target, PipelineOptions(batch_size=10, workers=1, max_retries=5),
        errors=ErrorSink(errors, None),
    )
    summary = pipeline.run()
    assert target.calls == 1  # not retried, not split, nothing after it
    assert summary.stopped and "401" in summary.stopped and not summary.ok
    assert source.pulled < 100 and summary.sent == 0
    assert "line 1 (id id-0): failed: ServerError: bad key" in errors.getvalue()


class RefusingOnceReadTarget(RefusingTarget):
    """Refuses the first request only once the main thread has read ``read`` rows, so the
    refusal lands at a known point of the reading."""

    def __init__(self, read: int) -> None:
        super().__init__()
        self.read = read
        self.pipeline: Pipeline | None = None

    def send(self, items: Sequence[Item]) -> Any:
        assert self.pipeline is not None
        for _ in range(1000):  # 5 s at most
            if self.pipeline.summary.rows_read >= self.read:
                break
            time.sleep(0.005)
        return super().send(items)


class PausingSource(CountingSource):
    """Holds back row ``pause_before`` until the import stops."""

    def __init__(self, count: int, pause_before: int) -> None:
        super().__init__(count)
        self.pause_before = pause_before
        self.pipeline: Pipeline | None = None

    def __iter__(self) -> Iterator[Row | Rejected]:
        for row in super().__iter__():
            if row.line == self.pause_before:
                assert self.pipeline is not None
                assert self.pipeline.stop.event.wait(10)
            yield row


def _stop_after_reading(
    rows: int, read: int, pause_before: int = 0
) -> tuple[Pipeline, dict[int, str]]:
    target = RefusingOnceReadTarget(read)
    source = PausingSource(rows, pause_before)
    errors = io.StringIO()
    pipeline = Pipeline(
        source, target, PipelineOptions(batch_size=2, workers=1), errors=ErrorSink(errors, None)
    )
    target.pipeline = source.pipeline = pipeline
    pipeline.run()
    reasons = {}
    for text in errors.getvalue().splitlines():
        line, _, reason = text.partition(": failed: ")
        reasons[int(line.split()[1])] = reason
    return pipeline, reasons


def test_every_row_read_before_a_stop_is_reported_even_the_batch_being_built() -> None:
    # Rows 1-2 are refused once row 3 was read; row 4 comes only after that, so row 3's
    # block was never complete and never sent.
    pipeline, reasons = _stop_after_reading(rows=5, read=3, pause_before=4)
    summary = pipeline.summary
    assert summary.rows_read == 3 and summary.failed == 3 and summary.sent == 0
    assert reasons[1] == reasons[2] == "ServerError: bad key (status=401)"
    assert reasons[3] == "not sent: the import stopped early"


def test_a_batch_waiting_for_room_when_the_import_stops_is_reported() -> None:
    # One worker, room for two batches: the third (rows 5-6) waits while the first is refused.
    pipeline, reasons = _stop_after_reading(rows=40, read=6)
    summary = pipeline.summary
    assert summary.rows_read == summary.failed == len(reasons) == 6
    assert [reasons[line] for line in range(3, 7)] == ["not sent: the import stopped early"] * 4


def test_a_fresh_profile_refused_as_foreign_is_a_configuration_problem(db: None) -> None:
    from django_experience.api.errors import NamespaceMismatch
    from django_experience.sync.targets import ExperienceTarget, TargetOptions

    target = ExperienceTarget(TargetOptions())
    gone = NamespaceMismatch(status=404, code="ERR_NAMESPACE_MISMATCH")
    assert not target.stops_import(gone)  # a stale mapping: that row gets a fresh profile
    assert target.stops_import(gone, recovered=True)  # even the fresh one: the namespace
