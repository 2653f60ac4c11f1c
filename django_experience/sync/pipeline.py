"""The import pipeline: stream rows, batch them, send batches concurrently (never two at once
for the same profile), retry what is worth retrying, record what failed, checkpoint progress.

Batches are the valid rows of fixed blocks of input positions: ``batch_size`` lines of a file
(blank and bad lines included) or ``batch_size`` consecutive users, so a line that is fixed or
edited between runs changes its own block only, and ``--resume`` can tell by the block's digest
whether exactly that input was completed before.

Only the main thread reads the source and touches the database; worker threads only send.
At most ``2 * workers`` batches are in flight or waiting, so memory stays flat.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, TextIO

from django_experience.sync.checkpoint import Checkpoint, block_digest
from django_experience.sync.commits import GroupedCommits
from django_experience.sync.rows import Batch, Rejected, Row
from django_experience.sync.targets import ImportTarget, Item

logger = logging.getLogger("django_experience.sync")


@dataclass(frozen=True)
class PipelineOptions:
    batch_size: int = 50
    workers: int = 1
    dry_run: bool = False
    max_retries: int = 8
    backoff: float = 0.5
    backoff_max: float = 30.0
    # Commit the completions of several batches at once (sync/commits.py). Off for a source
    # that may block (stdin): a transaction left open while it waits would hold the lock.
    group_commits: bool = True


@dataclass
class Summary:
    rows_read: int = 0
    rows_valid: int = 0  # read and passed the destination's validation
    sent: int = 0
    unmapped: int = 0  # of ``sent``: delivered, but the answer did not say which profile
    rejected: int = 0
    failed: int = 0
    skipped: int = 0  # rows of batches completed by an earlier run (``--resume``)
    batches: int = 0
    retries: int = 0
    interrupted: bool = False
    stopped: str | None = None  # why the import stopped early (a configuration refusal)
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return not (self.rejected or self.failed or self.interrupted or self.stopped)


@dataclass
class Outcome:
    """What became of one batch."""

    succeeded: list[tuple[list[Item], Any]] = field(default_factory=list)
    # Refused for their content (ImportTarget.refused_for_content): sending again cannot help.
    refused: list[tuple[Item, str]] = field(default_factory=list)
    # Not sent for any other reason (retries used up, stopped, another final error).
    failed: list[tuple[Item, str]] = field(default_factory=list)
    retries: int = 0
    # Some row succeeded with a replacement from ImportTarget.recover (a profile made up on
    # the spot): sending it again would make another one, so its completion is committed at once.
    recovered: bool = False


class ErrorSink:
    """Reports bad rows: the first few to the console, all of them to the errors file."""

    shown_limit = 20

    def __init__(
        self,
        console: TextIO,
        errors_file: TextIO | None,
        before_console: Callable[[], None] | None = None,
    ) -> None:
        self.console = console
        self.before_console = before_console or (lambda: None)
        self.file = errors_file
        self.shown = 0
        self.hidden = 0

    def report(self, line: int, reason: str, raw: str, external_id: str | None, kind: str) -> None:
        if self.shown < self.shown_limit:
            who = f" (id {external_id})" if external_id else ""
            self.before_console()
            self.console.write(f"line {line}{who}: {kind}: {reason}\n")
            self.shown += 1
        else:
            self.hidden += 1
        if self.file is not None:
            record = {"line": line, "id": external_id, "kind": kind, "reason": reason, "row": raw}
            self.file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.file.flush()


class Stop:
    """Set on Ctrl-C, or by :meth:`halt` when the destination refuses the import's
    configuration: retry waits end at once and no new request starts."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.reason: str | None = None  # set by halt()

    @property
    def stopping(self) -> bool:
        return self.event.is_set()

    def wait(self, seconds: float) -> bool:
        """Sleep; False when stopping."""
        return not self.event.wait(seconds)

    def halt(self, reason: str) -> None:
        """Stop the whole import: every further request would be refused the same way."""
        if self.reason is None:
            self.reason = reason
        self.event.set()

    def why(self) -> str:
        return "the import stopped early" if self.reason else "interrupted"


def _backoff(attempt: int, base: float, cap: float) -> float:
    step = min(cap, base * (2.0 ** (attempt - 1)))
    return float(step / 2 + random.random() * step / 2)


def deliver(
    target: ImportTarget, items: list[Item], options: PipelineOptions, stop: Stop
) -> Outcome:
    """Send one batch (worker thread): retries with backoff, bisect to isolate refused rows."""
    outcome = Outcome()
    _send(target, items, options, stop, outcome, recovered=False)
    return outcome


def _send(
    target: ImportTarget,
    items: list[Item],
    options: PipelineOptions,
    stop: Stop,
    outcome: Outcome,
    *,
    recovered: bool,
) -> None:
    if stop.stopping:  # no new request once stopping
        _give_up(target, outcome, outcome.failed, items, f"not sent: {stop.why()}")
        return
    attempt = 0
    while True:
        try:
            answer = target.send(items)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            if target.stops_import(exc, recovered=recovered):
                # Auth, permissions, a wrong organization or environment: the same for every
                # row, so nothing is worth sending until the configuration is fixed.
                stop.halt(f"{target.name or 'the destination'} refused the import: {reason}")
                _give_up(target, outcome, outcome.failed, items, reason)
                return
            minimum = target.retry_delay(exc)
            if minimum is None:
                if len(items) > 1 and target.splittable(exc):
                    middle = len(items) // 2
                    _send(target, items[:middle], options, stop, outcome, recovered=recovered)
                    _send(target, items[middle:], options, stop, outcome, recovered=recovered)
                    return
                replacement = None if recovered else target.recover(items[0], exc)
                if len(items) == 1 and replacement is not None:
                    _send(target, [replacement], options, stop, outcome, recovered=True)
                    return
                # Final is not refused: only a documented refusal of the content would meet the
                # rows again, so only then do they count as done. Anything else (an unknown
                # status, a 404 from a proxy, an exception without a status) fails them and
                # keeps their block open for --resume.
                bucket = outcome.refused if target.refused_for_content(exc) else outcome.failed
                _give_up(target, outcome, bucket, items, reason)
                return
            if attempt >= options.max_retries:
                _give_up(
                    target, outcome, outcome.failed, items, f"{reason} (after {attempt} retries)"
                )
                return
            attempt += 1
            delay = max(minimum, _backoff(attempt, options.backoff, options.backoff_max))
            if not stop.wait(delay):
                _give_up(target, outcome, outcome.failed, items, f"{reason} ({stop.why()})")
                return
            outcome.retries += 1
        else:
            outcome.succeeded.append((items, answer))
            outcome.recovered = outcome.recovered or recovered
            return


def _give_up(
    target: ImportTarget,
    outcome: Outcome,
    bucket: list[tuple[Item, str]],
    items: list[Item],
    reason: str,
) -> None:
    """Put ``items`` in ``bucket`` (refused or failed) with ``reason``, except those the
    destination accepted before the failure (one request per row): those were sent."""
    accepted: list[Item] = []
    for item in items:
        if target.accepted_before_failure(item):
            accepted.append(item)
        else:
            bucket.append((item, reason))
    if accepted:
        outcome.succeeded.append((accepted, None))


def _no_transaction() -> None:
    return None


class Pipeline:
    """Runs one import; :meth:`run` returns the :class:`Summary`."""

    def __init__(
        self,
        source: Iterable[Row | Rejected],
        target: ImportTarget,
        options: PipelineOptions,
        *,
        errors: ErrorSink,
        checkpoint: Checkpoint | None = None,
        on_progress: Callable[[Summary, bool], None] | None = None,
    ) -> None:
        self.source = source
        self.target = target
        self.options = options
        self.errors = errors
        self.checkpoint = checkpoint
        self.on_progress = on_progress or (lambda summary, force: None)
        self.summary = Summary()
        self.stop = Stop()
        self._inflight: dict[Future[Outcome], Batch] = {}
        # Profiles in flight -> number of batches carrying them; a key leaves when its count
        # drops to zero, so this holds at most the keys of the batches in flight.
        self._keys: dict[str, int] = {}
        self._batch_keys: dict[int, set[str]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._next_index = 0
        # What decides where the rows go (destination settings, a hash of its credentials):
        # a block completed elsewhere is not skipped on resume.
        self._context = target.fingerprint()
        # Completions of several batches share a commit; a block is recorded done after it.
        self._commits: GroupedCommits[Batch] = GroupedCommits(
            target.transaction if options.group_commits else _no_transaction, self._mark_done
        )

    def run(self) -> Summary:
        started = time.monotonic()
        try:
            try:
                self._read_all()
            except KeyboardInterrupt:  # no handler of interrupts.ctrl_c_stops in place
                self.interrupt()
            while True:
                try:
                    self._drain()
                    break
                except KeyboardInterrupt:
                    self.interrupt()
            self._commits.commit()
        except BaseException as exc:
            self._commits.roll_back(exc)
            raise
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
            self.summary.stopped = self.stop.reason
            self.summary.elapsed = time.monotonic() - started
            self.on_progress(self.summary, True)
        return self.summary

    def interrupt(self) -> None:
        """Ctrl-C: stop reading and retrying; batches in flight finish or give up quickly.
        Safe in a signal handler: it sets flags and an Event the main thread never waits on."""
        self.summary.interrupted = True
        self.stop.event.set()

    # reading ---------------------------------------------------------------------------
    def _read_all(self) -> None:
        size = self.options.batch_size
        batch: Batch | None = None
        for item in self.source:
            if self.stop.stopping:
                break  # the rows not read yet are left for --resume
            self.summary.rows_read += 1
            line = max(item.line, 1)
            block = (line - 1) // size
            if batch is not None and (block != batch.block or len(batch.rows) >= size):
                self._dispatch(batch)  # the previous block is complete
                batch = None
            if isinstance(item, Rejected):
                self._reject(item, "rejected")
            else:
                self.summary.rows_valid += 1
                if batch is None:
                    batch = Batch(self._next_index, block=block)
                    self._next_index += 1
                batch.rows.append(item)
                if line % size == 0:  # the block's last position: nothing more can join it
                    self._dispatch(batch)
                    batch = None
            self._collect(block=False)
            self.on_progress(self.summary, False)
        if batch is not None:
            self._dispatch(batch)

    def _reject(self, item: Rejected, kind: str, batch: Batch | None = None) -> None:
        self.summary.rejected += 1
        self.errors.report(item.line, item.reason, item.raw, item.external_id, kind)
        if batch is not None:  # kept with the block in the checkpoint, to report on resume
            batch.refused.append({"line": item.line, "kind": kind, "reason": item.reason})

    # sending ---------------------------------------------------------------------------
    def _dispatch(self, batch: Batch) -> None:
        self.summary.batches += 1
        batch.digest = block_digest(self._context, batch.block, batch.rows)
        if self.checkpoint is not None and self.checkpoint.is_done(batch.digest):
            self._skip(batch)
            return
        keys = {key for row in batch.rows for key in self.target.keys(row)}
        window = 2 * max(1, self.options.workers)
        # Wait for room, and for any batch still carrying one of these profiles.
        while len(self._inflight) >= window or any(key in self._keys for key in keys):
            self._collect(block=True)
        if self.stop.stopping:
            if not self.options.dry_run:  # a dry run sends nothing anyway
                self._not_sent(batch.rows)
            return
        # The destination's own validation, in dry runs too: a dry run counts what a real
        # run would send.
        items, rejected = self.target.prepare(batch)
        self.summary.rows_valid -= len(rejected)
        for item in rejected:
            self._reject(item, "rejected", batch)
        if self.options.dry_run:
            return
        if not items:
            self._mark_done(batch)
            return
        more = {key for item in items for key in self.target.item_keys(item)} - keys
        if more:
            while any(key in self._keys for key in more):
                self._collect(block=True)
            if self.stop.stopping:
                self._not_sent([item.row for item in items])
                return
            keys |= more
        future = self._executor_submit(items)
        self._inflight[future] = batch
        self._batch_keys[batch.index] = keys
        for key in keys:
            self._keys[key] = self._keys.get(key, 0) + 1

    def _not_sent(self, rows: list[Row]) -> None:
        """Stopped before ``rows`` were sent: they were read, so each is reported (and counted)
        as not sent, and their block stays open for --resume."""
        for row in rows:
            self.summary.failed += 1
            self.errors.report(
                row.line, f"not sent: {self.stop.why()}", row.canonical(), row.external_id, "failed"
            )

    def _skip(self, batch: Batch) -> None:
        """A block an earlier run completed with exactly this content: not sent again, but
        the rows refused then are reported again, so this run's errors file is complete."""
        assert self.checkpoint is not None
        rows = {row.line: row for row in batch.rows}
        reported = 0
        for entry in self.checkpoint.refused(batch.digest):
            line = entry.get("line")
            row = rows.get(line) if isinstance(line, int) else None
            if row is None:
                continue
            reported += 1
            kind = str(entry.get("kind") or "refused")
            if kind == "rejected":  # refused by the destination's validation: as in _dispatch
                self.summary.rows_valid -= 1
            self._reject(
                Rejected(row.line, str(entry.get("reason")), row.canonical(), row.external_id),
                kind,
            )
        self.summary.skipped += len(batch.rows) - reported

    def _executor_submit(self, items: list[Item]) -> Future[Outcome]:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=max(1, self.options.workers), thread_name_prefix="experience-import"
            )
        return self._pool.submit(deliver, self.target, items, self.options, self.stop)

    def _collect(self, *, block: bool) -> None:
        if not self._inflight:
            return
        if block:
            futures = list(self._inflight)
            done, _ = wait(futures, self._commits.seconds_left(), return_when=FIRST_COMPLETED)
            if not done:  # the answers are slow: commit what waits, rather than hold the lock
                self._commits.commit()
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
        else:  # called after every row read: a glance at each future, no waiter set up
            done = {future for future in self._inflight if future.done()}
        for future in done:
            batch = self._inflight.pop(future)
            self._release(self._batch_keys.pop(batch.index))
            self._finish(batch, future.result())

    def _release(self, keys: set[str]) -> None:
        for key in keys:
            left = self._keys[key] - 1
            if left:
                self._keys[key] = left
            else:
                del self._keys[key]

    def _finish(self, batch: Batch, outcome: Outcome) -> None:
        self.summary.retries += outcome.retries
        if outcome.succeeded:
            self._commits.open()
        for items, answer in outcome.succeeded:
            self.summary.unmapped += self.target.complete(items, answer) or 0
            self.summary.sent += len(items)
        for item, reason in outcome.refused:
            self._reject(
                Rejected(item.row.line, reason, item.row.canonical(), item.row.external_id),
                "refused",
                batch,
            )
        for item, reason in outcome.failed:
            self.summary.failed += 1
            self.errors.report(
                item.row.line, reason, item.row.canonical(), item.row.external_id, "failed"
            )
        if not outcome.failed:
            # Rows refused for their content would be refused again; failures (retries used up,
            # a refused configuration, any final error that is no refusal of the content) keep
            # the batch open for --resume.
            self._commits.done(batch, now=outcome.recovered)
        elif outcome.recovered:
            self._commits.commit()
        self.on_progress(self.summary, False)

    def _mark_done(self, batch: Batch) -> None:
        if self.checkpoint is not None:
            self.checkpoint.mark_done(batch.digest, batch.refused)

    def _drain(self) -> None:
        while self._inflight:
            self._collect(block=True)
