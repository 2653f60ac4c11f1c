"""--destination: one name, a list, or all registered destinations, each run on its own."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from django_experience.emulator.handle import EmulatorHandle
from django_experience.sync import targets
from django_experience.sync.rows import Batch, Rejected
from django_experience.sync.targets import ImportTarget, Item, TargetOptions
from tests.sync.helpers import assert_one_profile_each, people, read_errors, run_import, write_jsonl

received: list[dict[str, Any]] = []


class RecordingTarget(ImportTarget):
    """A destination that keeps what it gets and refuses rows without an email."""

    name = "recorder"

    def __init__(self, options: TargetOptions) -> None:
        self.options = options

    def prepare(self, batch: Batch) -> tuple[list[Item], list[Rejected]]:
        items, rejected = [], []
        for row in batch.rows:
            if "email" not in row.traits:
                rejected.append(Rejected(row.line, "email is required", "", row.external_id))
            else:
                items.append(Item(row, {"email": row.traits["email"]}))
        return items, rejected

    def send(self, items: Sequence[Item]) -> Any:
        received.extend(item.payload for item in items)


@pytest.fixture
def recorder() -> Iterator[None]:
    received.clear()
    targets.register_target("recorder", RecordingTarget)
    yield
    targets._targets.pop("recorder", None)


def test_all_destinations_get_the_rows(
    emulator: EmulatorHandle, tmp_path: Path, recorder: None
) -> None:
    rows = [*people(4), {"id": "no-email", "traits": {}}]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--destination", "all", "--errors", str(errors))
    assert result.code == 1  # the recorder refused one row
    assert "== experience" in result.stdout and "== recorder" in result.stdout
    assert_one_profile_each(emulator, [row["id"] for row in rows])
    assert [r["email"] for r in received] == [f"person{n}@example.com" for n in range(4)]
    assert read_errors(Path(f"{errors}.experience")) == []  # each file named after its own
    [refused] = read_errors(Path(f"{errors}.recorder"))
    assert (refused["line"], refused["reason"]) == (5, "email is required")


def test_unknown_destination_in_a_list(emulator: EmulatorHandle, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(1))
    result = run_import("--file", str(source), "--destination", "experience,nowhere")
    assert result.code == 1
    assert "choose from experience, all" in result.stderr
    assert emulator.request_count() == 0
