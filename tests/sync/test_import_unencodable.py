"""Rows whose event JSON cannot carry are rejected before sending, in dry runs too."""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

from django.contrib.auth import get_user_model
from pytest_django.fixtures import Settings

from django_experience.emulator.handle import EmulatorHandle
from tests.sync.helpers import profiles_by_user, read_errors, run_import

# NaN and Infinity parse from JSON lines, but JSON cannot carry them to the API.
LINES = [
    '{"id": "nan", "traits": {"score": NaN}}',
    '{"id": "ok-1", "traits": {"score": 1}}',
    '{"id": "inf", "traits": {"nested": {"score": -Infinity}}}',
    '{"id": "big", "traits": {"score": Infinity}}',
    '{"id": "ok-2", "traits": {}}',
]


def test_a_dry_run_rejects_rows_the_client_cannot_send(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = tmp_path / "people.jsonl"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--dry-run", "--errors", str(errors))
    assert result.code == 1
    assert "Valid rows: 2 (dry run: nothing sent)" in result.stdout
    assert "Rows rejected: 3" in result.stdout
    reported = read_errors(errors)
    assert [(entry["line"], entry["id"], entry["kind"]) for entry in reported] == [
        (1, "nan", "rejected"), (3, "inf", "rejected"), (4, "big", "rejected")
    ]
    assert all(entry["reason"].startswith("cannot be sent as JSON: ") for entry in reported)
    assert "line 1 (id nan): rejected: cannot be sent as JSON: " in result.stderr
    assert emulator.profiles() == []


def test_a_real_run_rejects_them_up_front_and_sends_the_others(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = tmp_path / "people.jsonl"
    source.write_text("\n".join(LINES) + "\n", encoding="utf-8")
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--errors", str(errors))
    assert result.code == 1
    assert "Valid rows: 2" in result.stdout and "Profiles sent: 2" in result.stdout
    assert [(entry["line"], entry["kind"]) for entry in read_errors(errors)] == [
        (1, "rejected"), (3, "rejected"), (4, "rejected")
    ]
    assert sorted(profiles_by_user(emulator)) == ["ok-1", "ok-2"]
    # Rejected before sending: one request carried the good rows, no bisecting.
    assert sum(emulator.stats()["requests"]["batch"].values()) == 1


def decimal_traits(user: Any) -> dict[str, Any]:
    if user.username == "rich":
        return {"balance": decimal.Decimal("12.50")}
    return {"email": user.email}


def test_user_traits_holding_a_decimal_are_rejected_in_a_dry_run(
    emulator: EmulatorHandle, settings: Settings
) -> None:
    settings.EXPERIENCE_USER_TRAITS = f"{__name__}.decimal_traits"
    users = get_user_model()
    users.objects.create_user("plain", email="plain@example.com")
    users.objects.create_user("rich", email="rich@example.com")
    result = run_import("--users", "--dry-run")
    assert result.code == 1
    assert "Valid rows: 1 (dry run: nothing sent)" in result.stdout
    assert "line 2 (id " in result.stderr
    assert "rejected: cannot be sent as JSON: Decimal is not JSON serialisable" in result.stderr


def test_a_lone_surrogate_is_rejected_and_the_import_goes_on(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = tmp_path / "people.jsonl"
    source.write_text(
        '{"id": "lone", "traits": {"name": "\\ud800"}}\n'
        '{"id": "\\udfffid", "traits": {}}\n'
        '{"id": "pair", "traits": {"name": "\\ud83d\\ude00"}}\n',  # an escaped pair is fine
        encoding="utf-8",
    )
    errors = tmp_path / "errors.jsonl"
    for dry in (True, False):
        result = run_import("--file", str(source), "--errors", str(errors),
                            *(["--dry-run"] if dry else []))
        assert result.code == 1, result.stderr
        assert "Valid rows: 1" in result.stdout
        reported = read_errors(errors)
        assert [(entry["line"], entry["kind"]) for entry in reported] == [
            (1, "rejected"), (2, "rejected")
        ]
        assert reported[0]["reason"] == (
            "a string holds a lone surrogate ('\\ud800'), which UTF-8 cannot carry"
        )
        assert reported[1]["row"] == '{"id": "\\udfffid", "traits": {}}'  # the line as read
    assert profiles_by_user(emulator)["pair"][0]["traits"] == {"name": "\U0001f600"}


def surrogate_traits(user: Any) -> dict[str, Any]:
    return {"name": "\udc80" if user.username == "odd" else user.username}


def test_user_traits_holding_a_lone_surrogate_are_rejected(
    emulator: EmulatorHandle, settings: Settings
) -> None:
    settings.EXPERIENCE_USER_TRAITS = f"{__name__}.surrogate_traits"
    users = get_user_model()
    users.objects.create_user("plain")
    users.objects.create_user("odd")
    result = run_import("--users")
    assert result.code == 1
    assert "line 2: rejected: a string holds a lone surrogate ('\\udc80')" in result.stderr
    assert "Profiles sent: 1" in result.stdout
