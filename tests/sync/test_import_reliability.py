"""Faults, re-runs, resume, existing mappings, concurrency and the async endpoint."""

from __future__ import annotations

import json
from pathlib import Path

from django_experience.api.events import identify_event
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping
from tests.sync.helpers import (
    assert_one_profile_each,
    identify_count,
    people,
    profiles_by_user,
    read_errors,
    run_import,
    write_jsonl,
)

FAST_RETRIES = ("--retries", "30", "--backoff", "0.005", "--timeout", "5")


def test_every_valid_row_arrives_despite_faults(emulator: EmulatorHandle, tmp_path: Path) -> None:
    rows = people(300)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    emulator.faults(
        overload_rate=0.2,
        error_rate=0.15,
        drop_rate=0.15,
        malformed_rate=0.1,
        latency_ms=2,
        seed=7,
    )
    result = run_import(
        "--file", str(source), "--workers", "4", "--batch-size", "20", *FAST_RETRIES
    )
    emulator.clear_faults()
    assert result.code == 0, result.stderr
    ids = [row["id"] for row in rows]
    assert_one_profile_each(emulator, ids)
    assert set(identify_count(emulator).values()) == {1}  # resent rows carried the same ids
    stats = emulator.stats()["requests"]["batch"]
    assert stats.get(429, 0) + stats.get(500, 0) > 0  # the faults really happened
    assert "Retried requests:" in result.stdout
    assert ProfileMapping.objects.count() == 300


def test_running_an_import_twice_creates_no_duplicates(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    rows = people(80)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    assert run_import("--file", str(source)).code == 0
    first = {p["id"] for p in emulator.profiles()}
    assert run_import("--file", str(source)).code == 0
    assert {p["id"] for p in emulator.profiles()} == first
    assert_one_profile_each(emulator, [row["id"] for row in rows])
    # Even with the mappings gone, the same external id lands on the same profile.
    ProfileMapping.objects.all().delete()
    changed = [{**row, "traits": {**row["traits"], "plan": "pro"}} for row in rows]
    assert run_import("--file", str(write_jsonl(tmp_path / "changed.jsonl", changed))).code == 0
    assert {p["id"] for p in emulator.profiles()} == first
    assert profiles_by_user(emulator)["person-3"][0]["traits"]["plan"] == "pro"


def test_existing_mapping_updates_that_profile(emulator: EmulatorHandle, tmp_path: Path) -> None:
    existing = emulator.client().create_profile([identify_event("known", {"old": True})])
    ProfileMapping.objects.create(
        profile_id=existing.profile.id,
        external_id="known",
        organization_id=emulator.organization_id,
        environment=emulator.environment,
    )
    source = write_jsonl(
        tmp_path / "people.jsonl",
        [{"id": "known", "traits": {"plan": "pro"}}, {"id": "new", "traits": {}}],
    )
    assert run_import("--file", str(source)).code == 0
    grouped = profiles_by_user(emulator)
    assert [p["id"] for p in grouped["known"]] == [existing.profile.id]
    assert grouped["known"][0]["traits"] == {"old": True, "plan": "pro"}
    assert len(emulator.profiles()) == 2


def test_a_profile_merged_by_user_id_is_mapped_to_the_survivor(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # The person signed in on the site before: a profile already holds their user id, but
    # this database has no mapping for it.
    existing = emulator.client().create_profile([identify_event("site-user", {"a": 1})])
    source = write_jsonl(tmp_path / "people.jsonl", [{"id": "site-user", "traits": {"b": 2}}])
    assert run_import("--file", str(source)).code == 0
    assert ProfileMapping.objects.get(external_id="site-user").profile_id == existing.profile.id
    assert [p["id"] for p in profiles_by_user(emulator)["site-user"]] == [existing.profile.id]


def test_resume_continues_without_resending_completed_batches(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    rows = people(100)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    checkpoint = tmp_path / "import.checkpoint"
    common = ("--file", str(source), "--batch-size", "10", "--checkpoint", str(checkpoint))
    # First run: half the requests fail and nothing is retried, like an outage mid-import.
    emulator.faults(error_rate=0.5, error_status=503, seed=3)
    first = run_import(*common, "--retries", "0", "--errors", str(errors))
    emulator.clear_faults()
    assert first.code == 1
    failed_lines = {e["line"] for e in read_errors(errors) if e["kind"] == "failed"}
    assert failed_lines and len(failed_lines) < 100
    assert all(e["kind"] == "failed" for e in read_errors(errors))  # nothing rejected
    failed_batches = {(line - 1) // 10 for line in failed_lines}
    header = json.loads(checkpoint.read_text().splitlines()[0])
    assert header["identity"]["batch_size"] == 10
    before = emulator.request_count("batch")

    second = run_import(*common, "--resume")
    assert second.code == 0, second.stderr
    assert emulator.request_count("batch") - before == len(failed_batches)
    assert f"Skipped (completed by an earlier run): {100 - 10 * len(failed_batches)}" in (
        second.stdout
    )
    assert_one_profile_each(emulator, [row["id"] for row in rows])
    assert not checkpoint.exists()  # finished: nothing left to resume


def test_resume_refuses_a_checkpoint_of_another_import(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(5))
    checkpoint = tmp_path / "import.checkpoint"
    checkpoint.write_text(json.dumps({"identity": {"batch_size": 7}, "completed_batches": []}))
    result = run_import("--file", str(source), "--checkpoint", str(checkpoint), "--resume")
    assert result.code == 1
    assert "belongs to another import" in result.stderr
    assert emulator.request_count() == 0


def test_workers_never_send_one_profile_twice_at_once(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    # "shared" is in every batch; the emulator answers 429 to concurrent requests on one
    # profile, and retries are off, so any overlap would show up as a failure.
    rows = []
    for n in range(20):
        rows.append({"id": "shared", "traits": {"n": n}})
        rows.extend({"id": f"p{n}-{k}", "traits": {}} for k in range(4))
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    emulator.faults(latency_ms=20)
    result = run_import(
        "--file", str(source), "--workers", "6", "--batch-size", "5", "--retries", "0"
    )
    assert result.code == 0, result.stderr
    assert emulator.stats()["requests"]["batch"].get(429, 0) == 0
    assert emulator.request_count("batch") == 20
    shared = profiles_by_user(emulator)["shared"]
    assert len(shared) == 1
    assert shared[0]["traits"] == {"n": 19}  # applied in row order
    assert len(emulator.profiles()) == 1 + 80


def test_async_import_uses_the_import_endpoint_without_duplicates(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    rows = people(60)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    assert run_import("--file", str(source), "--async").code == 0
    assert run_import("--file", str(source), "--async").code == 0
    assert emulator.request_count("batch") == 0
    assert emulator.request_count("import") == 4
    assert_one_profile_each(emulator, [row["id"] for row in rows])
    assert ProfileMapping.objects.count() == 0  # no profile ids come back


def test_failed_rows_are_reported_and_the_exit_status_is_non_zero(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", people(3))
    emulator.stop()
    errors = tmp_path / "errors.jsonl"
    result = run_import(
        "--file", str(source), "--retries", "1", "--backoff", "0.01", "--errors", str(errors)
    )
    assert result.code == 1
    assert [e["line"] for e in read_errors(errors)] == [1, 2, 3]
    assert all(e["kind"] == "failed" for e in read_errors(errors))
    assert "Failures: 3" in result.stdout


def test_an_unknown_environment_stops_the_import_after_one_request(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    emulator.restrict(emulator.organization_id, ["production"])  # ours ("main") is unknown
    rows = people(30)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    args = ("--file", str(source), "--batch-size", "10", *FAST_RETRIES)
    result = run_import(*args, "--errors", str(errors))
    assert result.code == 1
    # The same for every row: no splitting, no fresh profile per row, no further batch.
    assert emulator.request_count("batch") == 1
    assert emulator.stats()["events"] == 0 and not ProfileMapping.objects.exists()
    assert "Stopped early: experience refused the import: ConfigNotFound" in result.stdout
    assert "--resume" in result.stderr
    assert {e["kind"] for e in read_errors(errors)} == {"failed"}

    emulator.restrict(emulator.organization_id, ["production", emulator.environment])
    resumed = run_import(*args, "--resume")
    assert resumed.code == 0, resumed.stderr
    assert "Skipped" not in resumed.stdout  # nothing was completed by the refused run
    assert_one_profile_each(emulator, [row["id"] for row in rows])
