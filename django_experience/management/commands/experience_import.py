"""``manage.py experience_import``: bring existing customers into the Experience API."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from typing import Any, TextIO, cast

from django.core.management.base import BaseCommand, CommandError, CommandParser

from django_experience.sync.checkpoint import CheckpointError
from django_experience.sync.pipeline import Summary
from django_experience.sync.runner import ImportConfig, describe, run_import
from django_experience.sync.sources import SourceError
from django_experience.sync.targets import target_names


def _number(
    parse: Callable[[str], float], usable: Callable[[float], bool], expected: str
) -> Callable[[str], Any]:
    """An argparse type: ``parse(text)`` when ``usable``, else an error naming the range (NaN
    and infinities included, which ``float`` reads but no wait or timeout can use)."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            value = math.nan
        if not usable(value):
            raise argparse.ArgumentTypeError(f"must be {expected}, not {text!r}")
        return value

    return convert


_positive_int = _number(int, lambda value: value >= 1, "a whole number, 1 or more")
_retries = _number(int, lambda value: value >= 0, "a whole number, 0 or more")
_seconds = _number(float, lambda value: 0 <= value < math.inf, "a number of seconds, 0 or more")
_positive_seconds = _number(
    float, lambda value: 0 < value < math.inf, "a positive number of seconds"
)


class Command(BaseCommand):
    help = (
        "Import people (Django users, or a .jsonl/.csv file) into profiles: one identify event "
        "per row, sent in batches. Exits non-zero when any row was rejected or failed."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("--users", action="store_true", help="Import the Django users.")
        source.add_argument(
            "--file",
            metavar="PATH",
            help="A .jsonl file (one {'id', 'traits'} object per line) or a .csv file (an 'id' "
            "column, every other column a trait); '-' reads standard input (needs --format).",
        )
        parser.add_argument("--format", choices=("jsonl", "csv"), help="Format of --file.")
        parser.add_argument(
            "--destination",
            default="experience",
            help="Where to send the rows: a destination name, a comma-separated list, or "
            "'all' (default experience). With several, each gets its own errors file "
            "(FILE.<destination>) and checkpoint (PATH.<destination> with --checkpoint).",
        )
        parser.add_argument(
            "--async",
            dest="asynchronous",
            action="store_true",
            help="Use the asynchronous import endpoint (no profile ids come back, so no "
            "mappings are stored).",
        )
        parser.add_argument(
            "--workers", type=_positive_int, default=1, help="Concurrent requests (default 1)."
        )
        parser.add_argument(
            "--batch-size",
            type=_positive_int,
            default=None,
            help="Rows per batch (lines of the file, or users). Default: the destination's, 50 "
            "for the Experience API (its identify limit per request) and Experiture, Releva's "
            "configured batch_size (100 unless set) for Releva.",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Validate and count; send nothing."
        )
        parser.add_argument(
            "--resume",
            action="store_true",
            help="Continue a previous run from its checkpoint, skipping the batches it "
            "completed with exactly the same input.",
        )
        parser.add_argument("--checkpoint", metavar="PATH", help="Checkpoint file to use.")
        parser.add_argument(
            "--errors", metavar="FILE", help="Write every bad or failed row to FILE (JSON lines)."
        )
        parser.add_argument(
            "--retries",
            type=_retries,
            default=8,
            help="Retries of a batch after 429, 5xx or connection errors (default 8).",
        )
        parser.add_argument(
            "--backoff", type=_seconds, default=0.5, help="First retry delay in seconds (doubles)."
        )
        parser.add_argument(
            "--timeout",
            type=_positive_seconds,
            default=30.0,
            help="Seconds per request (default 30).",
        )
        parser.add_argument(
            "--progress-interval",
            type=_positive_seconds,
            default=None,
            help="Seconds between progress updates (default 0.2 on a terminal, 5 otherwise).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        destinations = self._destinations(options["destination"])
        if options["file"] == "-" and not options["format"]:
            raise CommandError("reading standard input (--file -) needs --format jsonl or csv")
        if options["file"] == "-" and len(destinations) > 1:
            raise CommandError(
                "standard input can be read once: save it to a file to import it into "
                "several destinations"
            )
        failed = interrupted = False
        stopped: list[str] = []
        for destination in destinations:
            if len(destinations) > 1:
                self.stdout.write(f"== {destination}")
            summary = self._import(destination, options, several=len(destinations) > 1)
            failed = failed or not summary.ok
            if summary.stopped:
                stopped.append(summary.stopped)  # that destination only: the others go on
            elif summary.interrupted:
                interrupted = True
                break
        if interrupted:
            raise CommandError("import interrupted", returncode=130)
        if stopped:
            raise CommandError(
                "the import stopped early: "
                + "; ".join(stopped)
                + ". Fix the configuration, then run the same command with --resume.",
                returncode=1,
            )
        if failed:
            where = options["errors"]
            if where and len(destinations) > 1:
                where += ".<destination>"
            raise CommandError(
                "some rows were rejected or failed" + (f" (see {where})" if where else ""),
                returncode=1,
            )

    @staticmethod
    def _destinations(value: str) -> list[str]:
        """``name``, ``a,b`` or ``all`` (every registered destination)."""
        known = target_names()
        if value == "all":
            return ["experience", *[name for name in known if name != "experience"]]
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = [name for name in names if name not in known]
        if unknown or not names:
            raise CommandError(
                f"unknown --destination {value!r}: choose from {', '.join([*known, 'all'])}"
            )
        return list(dict.fromkeys(names))

    def _import(self, destination: str, options: dict[str, Any], *, several: bool) -> Summary:
        errors, checkpoint = options["errors"], options["checkpoint"]
        if several:
            # One errors file and one checkpoint per destination, each named after it.
            errors = f"{errors}.{destination}" if errors else None
            checkpoint = f"{checkpoint}.{destination}" if checkpoint else None
        config = ImportConfig(
            path=options["file"],
            users=options["users"],
            format=options["format"],
            destination=destination,
            asynchronous=options["asynchronous"],
            batch_size=options["batch_size"],
            workers=options["workers"],
            dry_run=options["dry_run"],
            resume=options["resume"],
            checkpoint=checkpoint,
            errors=errors,
            max_retries=max(0, options["retries"]),
            backoff=max(0.0, options["backoff"]),
            timeout=options["timeout"],
            progress_interval=options["progress_interval"],
        )
        stdin = options.get("stdin") or sys.stdin.buffer
        stderr = cast(TextIO, self.stderr._out)
        try:
            summary = run_import(
                config,
                stdout=cast(TextIO, self.stdout._out),
                stderr=stderr,
                stdin=stdin,
                tty=stderr.isatty(),
            )
        except (SourceError, CheckpointError, LookupError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(describe(summary, dry_run=config.dry_run))
        return summary
