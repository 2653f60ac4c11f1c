"""experience_import from .jsonl, .csv and standard input, against the emulator."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping
from tests.sync.helpers import (
    assert_one_profile_each,
    people,
    profiles_by_user,
    read_errors,
    run_import,
    write_csv,
    write_jsonl,
)


def mappings() -> dict[str, str]:
    return {
        str(external_id): profile_id
        for external_id, profile_id in ProfileMapping.objects.values_list(
            "external_id", "profile_id"
        )
    }


def test_jsonl_import_creates_one_profile_and_mapping_per_row(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    rows = people(120)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    result = run_import("--file", str(source))
    assert result.code == 0, result.stderr
    ids = [row["id"] for row in rows]
    assert_one_profile_each(emulator, ids)
    grouped = profiles_by_user(emulator)
    assert grouped["person-7"][0]["traits"] == {"email": "person7@example.com", "n": 7}
    assert mappings() == {key: grouped[key][0]["id"] for key in ids}
    assert "Rows read: 120" in result.stdout
    assert "Profiles sent: 120" in result.stdout
    assert "Rows rejected: 0" in result.stdout
    # 50 identify events per request at most
    assert emulator.request_count("batch") == 3


def test_bad_rows_are_reported_with_line_numbers_and_the_rest_is_sent(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    lines: list[object] = [*people(3)]
    lines.insert(1, "{not json")  # line 2
    lines.append({"traits": {"a": 1}})  # line 5: no id
    lines.append({"id": "x", "traits": ["not", "an", "object"]})  # line 6
    lines.append("")  # line 7: blank, skipped
    lines.append([1, 2])  # line 8
    lines.append({"id": "", "traits": {}})  # line 9
    lines.append({"id": "last", "traits": {}})  # line 10
    source = write_jsonl(tmp_path / "mixed.jsonl", lines)
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 1
    reported = {(e["line"], e["kind"]) for e in read_errors(errors)}
    assert reported == {
        (2, "rejected"),
        (5, "rejected"),
        (6, "rejected"),
        (8, "rejected"),
        (9, "rejected"),
    }
    reasons = {e["line"]: e["reason"] for e in read_errors(errors)}
    assert reasons[2].startswith("bad JSON")
    assert reasons[5] == "missing id"
    assert reasons[6] == "traits must be an object, got list"
    assert "JSON object" in reasons[8]
    assert "line 2: rejected: bad JSON" in result.stderr
    assert "Rows rejected: 5" in result.stdout
    assert_one_profile_each(emulator, ["person-0", "person-1", "person-2", "last"])


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_an_id_no_mapping_can_keep_rejects_its_row_only(
    emulator: EmulatorHandle, tmp_path: Path, fmt: str
) -> None:
    # On PostgreSQL, whose text cannot hold a NUL character, such an id failed the whole
    # import with a database error (at the batch's lookup of mappings); an id longer than the
    # column would have failed its batch's insert. SQLite stored both.
    ids = ["crm-1", "crm\x00-2", "c" * 256, "crm-4"]
    if fmt == "jsonl":
        rows = [{"id": external_id, "traits": {"n": n}} for n, external_id in enumerate(ids)]
        source, first_line = write_jsonl(tmp_path / "people.jsonl", rows), 1
    else:
        # Written by hand: Python 3.10's csv writer refuses a NUL.
        source, first_line = tmp_path / "people.csv", 2
        lines = ["id,n", *(f"{external_id},{n}" for n, external_id in enumerate(ids))]
        source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 1, result.stderr
    nul = "id holds a NUL character"
    if fmt == "csv" and sys.version_info < (3, 11):
        nul = "bad CSV: line contains NUL"  # the csv module of 3.10 refuses the line itself
    assert {e["line"]: e["reason"] for e in read_errors(errors)} == {
        first_line + 1: nul,
        first_line + 2: "id is longer than 255 characters",
    }
    assert "Rows rejected: 2" in result.stdout
    assert_one_profile_each(emulator, ["crm-1", "crm-4"])
    assert set(mappings()) == {"crm-1", "crm-4"}


def test_csv_import_with_traits_columns(emulator: EmulatorHandle, tmp_path: Path) -> None:
    source = write_csv(
        tmp_path / "people.csv",
        ["email", "id", "plan"],
        [
            ["a@example.com", "a", "pro"],
            ["b@example.com", "", "free"],  # line 3: empty id
            ["c@example.com", "c", ""],  # empty cell: trait left out
            ["d@example.com", "d", "pro", "extra"],  # line 5: too many cells
        ],
    )
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 1
    assert [(e["line"], e["reason"]) for e in read_errors(errors)] == [
        (3, "id must be a non-empty string or an integer, got ''"),
        (5, "4 cells but the header has 3 columns"),
    ]
    grouped = profiles_by_user(emulator)
    assert sorted(grouped) == ["a", "c"]
    assert grouped["a"][0]["traits"] == {"email": "a@example.com", "plan": "pro"}
    assert grouped["c"][0]["traits"] == {"email": "c@example.com"}


def test_csv_without_id_column_is_refused_before_sending(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = write_csv(tmp_path / "people.csv", ["email"], [["a@example.com"]])
    result = run_import("--file", str(source))
    assert result.code == 1
    assert "no 'id' column" in result.stderr
    assert emulator.request_count() == 0


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_standard_input(emulator: EmulatorHandle, fmt: str) -> None:
    data = (
        b'{"id": "s1", "traits": {"k": "v"}}\n{"id": "s2"}\n'
        if fmt == "jsonl"
        else b"id,k\ns1,v\ns2,\n"
    )
    result = run_import("--file", "-", "--format", fmt, stdin=io.BytesIO(data))
    assert result.code == 0, result.stderr
    assert_one_profile_each(emulator, ["s1", "s2"])
    assert profiles_by_user(emulator)["s1"][0]["traits"] == {"k": "v"}


def test_standard_input_needs_a_format(emulator: EmulatorHandle) -> None:
    result = run_import("--file", "-", stdin=io.BytesIO(b'{"id": "s1"}\n'))
    assert result.code == 1
    assert "--format" in result.stderr
    assert emulator.request_count() == 0


def test_dry_run_validates_and_sends_nothing(emulator: EmulatorHandle, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", [*people(60), "{broken"])
    result = run_import("--file", str(source), "--dry-run")
    assert result.code == 1  # a bad row is still a bad row
    assert "Rows read: 61" in result.stdout
    assert "Valid rows: 60 (dry run: nothing sent)" in result.stdout
    assert "line 61: rejected" in result.stderr
    assert emulator.request_count() == 0
    assert ProfileMapping.objects.count() == 0
    assert not list(tmp_path.glob("*.checkpoint"))


def test_unknown_destination_is_refused(emulator: EmulatorHandle, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(1))
    result = run_import("--file", str(source), "--destination", "nowhere")
    assert result.code == 1
    assert "unknown --destination 'nowhere'" in result.stderr
    assert emulator.request_count() == 0
