"""experience_import refuses numbers it cannot use, naming the option, before reading a row."""

from __future__ import annotations

from pathlib import Path

import pytest

from django_experience.emulator.handle import EmulatorHandle
from tests.sync.helpers import people, run_import, write_jsonl


@pytest.mark.parametrize(
    ("option", "value", "problem"),
    [
        ("--retries", "-1", "must be a whole number, 0 or more"),
        ("--backoff", "-1", "must be a number of seconds, 0 or more"),
        ("--backoff", "nan", "must be a number of seconds, 0 or more"),
        ("--backoff", "inf", "must be a number of seconds, 0 or more"),
        ("--timeout", "0", "must be a positive number of seconds"),
        ("--timeout", "-3", "must be a positive number of seconds"),
        ("--timeout", "inf", "must be a positive number of seconds"),
        ("--timeout", "nan", "must be a positive number of seconds"),
        ("--timeout", "soon", "must be a positive number of seconds"),
        ("--progress-interval", "0", "must be a positive number of seconds"),
        ("--progress-interval", "nan", "must be a positive number of seconds"),
        ("--workers", "0", "must be a whole number, 1 or more"),
        ("--batch-size", "many", "must be a whole number, 1 or more"),
    ],
)
def test_a_number_that_cannot_be_used_is_refused_by_name(
    emulator: EmulatorHandle, tmp_path: Path, option: str, value: str, problem: str
) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(3))
    result = run_import("--file", str(source), option, value)
    assert result.code != 0
    assert f"argument {option}: {problem}, not {value!r}" in result.stderr
    assert not emulator.profiles()


def test_the_edges_of_each_range_are_accepted(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(3))
    result = run_import(
        "--file", str(source), "--retries", "0", "--backoff", "0", "--timeout", "0.5",
        "--progress-interval", "0.01", "--workers", "1", "--batch-size", "1",
    )  # fmt: skip
    assert result.code == 0, result.stderr
    assert len(emulator.profiles()) == 3
