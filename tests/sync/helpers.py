"""Helpers of the import tests: write sources, run the command, read what the emulator holds."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from django.core.management import call_command
from django.core.management.base import CommandError

from django_experience.emulator.handle import EmulatorHandle


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    """``contextlib.chdir`` (Python 3.11+) for Python 3.10 too."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def run_import(*args: str, stdin: IO[bytes] | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    extra: dict[str, Any] = {"stdin": stdin} if stdin is not None else {}
    # An import without a file keeps its checkpoint in the working directory: not the repo's.
    with tempfile.TemporaryDirectory() as workdir, _working_directory(workdir):
        try:
            call_command("experience_import", *args, stdout=out, stderr=err, **extra)
            code = 0
        except CommandError as exc:
            code = exc.returncode
            err.write(f"CommandError: {exc}\n")
    return Result(code, out.getvalue(), err.getvalue())


def people(count: int, prefix: str = "person") -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}-{n}", "traits": {"email": f"{prefix}{n}@example.com", "n": n}}
        for n in range(count)
    ]


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    with path.open("w", encoding="utf-8") as stream:
        for row in rows:
            stream.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


def write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def profiles_by_user(emulator: EmulatorHandle) -> dict[str, list[dict[str, Any]]]:
    """Stored profiles grouped by the user id they were identified with."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for profile in emulator.profiles():
        if profile.get("userId"):
            grouped.setdefault(profile["userId"], []).append(profile)
    return grouped


def assert_one_profile_each(emulator: EmulatorHandle, expected_ids: list[str]) -> None:
    grouped = profiles_by_user(emulator)
    assert sorted(grouped) == sorted(expected_ids)
    duplicates = {key: len(value) for key, value in grouped.items() if len(value) != 1}
    assert duplicates == {}
    assert len(emulator.profiles()) == len(expected_ids)


def identify_count(emulator: EmulatorHandle) -> Counter[str]:
    return Counter(
        event["userId"]
        for profile in emulator.profiles()
        for event in profile["events"]
        if event["type"] == "identify"
    )


def read_errors(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
