"""A CSV row must have as many cells as the header has columns: fewer are a cell gone astray too."""

from __future__ import annotations

from pathlib import Path

from django_experience.emulator.handle import EmulatorHandle
from tests.sync.helpers import profiles_by_user, read_errors, run_import


def test_rows_with_too_few_cells_are_rejected_and_blank_lines_skipped(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = tmp_path / "people.csv"
    source.write_text(
        "id,email,plan\n"
        "c-1,a@example.com,gold\n"
        "c-2,b@example.com\n"  # line 3: a cell short (the plan would be lost unnoticed)
        "\n"  # line 4: blank, skipped
        "c-3\n"  # line 5: two short
        "c-4,d@example.com,\n"  # an empty cell: there, and left out of the traits
        "\n",  # a trailing blank line: skipped
        encoding="utf-8",
    )
    errors = tmp_path / "errors.jsonl"
    for dry in (True, False):
        result = run_import("--file", str(source), "--errors", str(errors),
                            *(["--dry-run"] if dry else []))
        assert result.code == 1
        assert "Rows read: 4" in result.stdout and "Valid rows: 2" in result.stdout
        assert [(e["line"], e["kind"], e["reason"]) for e in read_errors(errors)] == [
            (3, "rejected", "2 cells but the header has 3 columns"),
            (5, "rejected", "1 cell but the header has 3 columns"),
        ]
    grouped = profiles_by_user(emulator)
    assert sorted(grouped) == ["c-1", "c-4"]
    assert grouped["c-4"][0]["traits"] == {"email": "d@example.com"}


def test_whitespace_lines_and_empty_spreadsheet_rows_are_skipped(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = tmp_path / "people.csv"
    source.write_text(
        "id,email\n"
        "c-1,a@example.com\n"
        "   \n"  # whitespace only: blank, as in JSON lines
        ",\n"  # a spreadsheet's empty row
        " , \t\n"
        "c-2,b@example.com\n",
        encoding="utf-8",
    )
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 0, result.stdout
    assert "Rows read: 2" in result.stdout and "Valid rows: 2" in result.stdout
    assert sorted(profiles_by_user(emulator)) == ["c-1", "c-2"]


def test_a_cell_longer_than_the_csv_modules_default_limit_is_imported_whole(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # The csv module refuses cells over 131,072 characters unless told otherwise; JSON lines
    # carry such a trait, so CSV must too.
    long_note = "n" * 200_000
    source = tmp_path / "people.csv"
    source.write_text(f'id,note\nc-1,"{long_note}"\nc-2,short\n', encoding="utf-8")
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 0, result.stdout
    assert "Valid rows: 2" in result.stdout
    grouped = profiles_by_user(emulator)
    assert grouped["c-1"][0]["traits"] == {"note": long_note}
    assert grouped["c-2"][0]["traits"] == {"note": "short"}


def test_a_quote_left_open_is_refused_at_the_cell_limit_and_later_rows_still_import(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    from django_experience.sync.sources import MAX_CSV_CELL

    source = tmp_path / "people.csv"
    with source.open("w", encoding="utf-8") as stream:
        stream.write('id,note\nc-1,fine\nc-2,"unclosed ')
        stream.write("x" * (MAX_CSV_CELL + 10))  # one line: the cell runs past the limit
        stream.write("\nc-3,after\n")
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 1
    assert [(e["line"], e["reason"]) for e in read_errors(errors)] == [
        (3, f"a cell is longer than {MAX_CSV_CELL:,} characters (a quote left open?)"),
    ]
    assert sorted(profiles_by_user(emulator)) == ["c-1", "c-3"]
