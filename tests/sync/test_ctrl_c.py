"""interrupts.ctrl_c_stops in the test process: Ctrl-C is a request to stop, never an
exception raised in the middle of the main thread's work."""

from __future__ import annotations

import io
import os
import signal
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from django_experience.sync.interrupts import ctrl_c_stops
from django_experience.sync.pipeline import ErrorSink, Pipeline, PipelineOptions
from django_experience.sync.rows import Batch, Rejected
from django_experience.sync.targets import ImportTarget, Item
from tests.sync.test_pipeline import PausingSource


class CtrlCWhileRecording(ImportTarget):
    """Accepts everything; Ctrl-C reaches the process while it records the first batch."""

    name = "recording"

    def __init__(self) -> None:
        self.recorded: list[str] = []

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        return [Item(row, {}) for row in batch.rows], []

    def send(self, items: Sequence[Item]) -> Any:
        return None

    def complete(self, items: Sequence[Item], answer: Any) -> None:
        for item in items:
            if not self.recorded:
                os.kill(os.getpid(), signal.SIGINT)  # its handler runs before the next line
            self.recorded.append(item.row.external_id)


@pytest.fixture
def default_sigint() -> Iterator[None]:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def test_ctrl_c_lets_the_work_in_hand_finish_and_stops_the_import(default_sigint: None) -> None:
    # Row 60 waits for the stop: Python may run the handler a little after the signal came
    # (when another thread saw it first), and by then all 1,000 rows could have been read.
    source = PausingSource(1_000, pause_before=60)
    target = CtrlCWhileRecording()
    pipeline = Pipeline(
        source, target, PipelineOptions(batch_size=10, workers=1),
        errors=ErrorSink(io.StringIO(), None),
    )
    source.pipeline = pipeline
    said: list[str] = []
    with ctrl_c_stops(pipeline.interrupt, said.append):
        summary = pipeline.run()
    # The batch being recorded when Ctrl-C came was recorded whole (an exception would have
    # cut it off after its first row); reading stopped soon after.
    assert target.recorded[:10] == [f"id-{n}" for n in range(10)]
    assert summary.interrupted and not summary.ok
    assert source.pulled <= 60  # nothing read after the stop
    assert said == ["Stopping after the batches in flight (Ctrl-C again: quit now)"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back


def test_a_handler_of_the_callers_own_and_an_ignored_sigint_stay_in_charge(
    default_sigint: None,
) -> None:
    def own(signum: int, frame: Any) -> None:
        raise AssertionError("not called")

    for handler in (own, signal.SIG_IGN):
        signal.signal(signal.SIGINT, handler)
        with ctrl_c_stops(lambda: None, lambda text: None):
            assert signal.getsignal(signal.SIGINT) is handler
        assert signal.getsignal(signal.SIGINT) is handler


def test_outside_the_main_thread_nothing_is_installed(default_sigint: None) -> None:
    errors: list[BaseException] = []
    handlers: list[Any] = []

    def run() -> None:
        try:
            with ctrl_c_stops(lambda: None, lambda text: None):
                handlers.append(signal.getsignal(signal.SIGINT))
        except BaseException as exc:  # signal.signal raises ValueError outside the main thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(10)
    assert errors == [] and handlers == [signal.default_int_handler]
