"""Put an import together from its options: source, target, checkpoint, errors file, progress."""

from __future__ import annotations

import os
from contextlib import ExitStack
from dataclasses import dataclass
from typing import IO, Any, TextIO

from django_experience.sync.checkpoint import Checkpoint
from django_experience.sync.interrupts import ctrl_c_stops
from django_experience.sync.pipeline import ErrorSink, Pipeline, PipelineOptions, Summary
from django_experience.sync.progress import Progress
from django_experience.sync.sources import Source, open_source
from django_experience.sync.targets import TargetOptions, build_target


@dataclass(frozen=True)
class ImportConfig:
    path: str | None = None
    users: bool = False
    format: str | None = None
    destination: str = "experience"
    asynchronous: bool = False
    batch_size: int | None = None  # None: the destination's own (ImportTarget.batch_size)
    workers: int = 1
    dry_run: bool = False
    resume: bool = False
    checkpoint: str | None = None
    errors: str | None = None
    max_retries: int = 8
    backoff: float = 0.5
    timeout: float = 30.0
    progress_interval: float | None = None


def checkpoint_path(config: ImportConfig) -> str:
    """``--checkpoint``, else next to the input file, else in the working directory."""
    if config.checkpoint:
        return config.checkpoint
    if config.path and config.path != "-":
        return f"{config.path}.{config.destination}-import.checkpoint"
    source = "users" if config.users else f"stdin-{config.format}"
    return f"experience-import-{source}-{config.destination}.checkpoint"


def identity(config: ImportConfig, batch_size: int | None = None) -> dict[str, Any]:
    """What must match for ``--resume`` to continue a previous run (``batch_size``: the one in
    effect, when ``config`` leaves it to the destination)."""
    from django_experience.conf import conf

    if config.users:
        source = "users"
    elif config.path == "-":
        source = f"stdin:{config.format}"
    else:
        source = f"file:{os.path.abspath(config.path or '')}"
    return {
        "source": source,
        "batch_size": batch_size or config.batch_size,
        "destination": config.destination,
        "async": config.asynchronous,
        "organization": conf.ORGANIZATION_ID,
        "environment": conf.ENVIRONMENT,
    }


def run_import(
    config: ImportConfig,
    *,
    stdout: TextIO,
    stderr: TextIO,
    stdin: IO[bytes] | None = None,
    tty: bool = False,
) -> Summary:
    """Run one import; raises SourceError/CheckpointError/LookupError before sending anything."""
    source: Source = open_source(
        path=config.path, users=config.users, fmt=config.format, stdin=stdin
    )
    target = build_target(
        config.destination,
        TargetOptions(asynchronous=config.asynchronous, timeout=config.timeout),
    )
    batch_size = config.batch_size or target.batch_size
    checkpoint = None
    if not config.dry_run:
        checkpoint = Checkpoint(checkpoint_path(config), identity(config, batch_size))
        if config.resume:
            checkpoint.load()
    progress = Progress(
        stderr,
        total=source.total(),
        unit=source.unit,
        tty=tty,
        interval=config.progress_interval,
    )

    def report(summary: Summary, force: bool) -> None:
        progress.update(
            position=source.position(), rows=summary.rows_read, sent=summary.sent, force=force
        )

    with ExitStack() as stack:
        if checkpoint is not None:
            checkpoint.start()
            stack.callback(checkpoint.close)
        errors_file = None
        if config.errors:
            errors_file = stack.enter_context(open(config.errors, "w", encoding="utf-8"))
        pipeline = Pipeline(
            source,
            target,
            PipelineOptions(
                batch_size=batch_size,
                workers=config.workers,
                dry_run=config.dry_run,
                max_retries=config.max_retries,
                backoff=config.backoff,
                group_commits=config.path != "-",
            ),
            errors=ErrorSink(stderr, errors_file, before_console=progress.clear),
            checkpoint=checkpoint,
            on_progress=report,
        )

        def say(text: str) -> None:
            progress.clear()
            stderr.write(text + "\n")
            stderr.flush()

        try:
            with ctrl_c_stops(pipeline.interrupt, say):
                summary = pipeline.run()
        finally:
            progress.close()
        if pipeline.errors.hidden:
            stderr.write(
                f"... and {pipeline.errors.hidden} more bad row(s)"
                + (f", all in {config.errors}\n" if config.errors else "\n")
            )
    if checkpoint is not None and summary.ok:
        checkpoint.remove()  # nothing left to resume
    return summary


def describe(summary: Summary, *, dry_run: bool) -> str:
    """The final summary line(s)."""
    lines = [
        f"Rows read: {summary.rows_read}",
        f"Valid rows: {summary.rows_valid}" + (" (dry run: nothing sent)" if dry_run else ""),
        f"Profiles sent: {summary.sent}",
        *([f"Sent but not mapped: {summary.unmapped}"] if summary.unmapped else []),
        f"Rows rejected: {summary.rejected}",
        f"Failures: {summary.failed}",
    ]
    if summary.skipped:
        lines.append(f"Skipped (completed by an earlier run): {summary.skipped}")
    if summary.retries:
        lines.append(f"Retried requests: {summary.retries}")
    lines.append(f"Elapsed: {summary.elapsed:.1f}s")
    if summary.stopped:
        lines.append(f"Stopped early: {summary.stopped}")
        lines.append(
            "Every further row would be refused the same way: fix the configuration, then "
            "run the same command with --resume to send the rest"
        )
    elif summary.interrupted:
        lines.append("Interrupted: run again with --resume to continue")
    return "\n".join(lines)
