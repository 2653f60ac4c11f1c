"""``experience_import --destination experiture | releva | all`` against the emulated platforms."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pytest_django.fixtures import Settings as SettingsWrapper

from django_experience.emulator import destinations as emulated
from django_experience.emulator.handle import EmulatorHandle
from tests.stub_server import RecordedRequest, StubResponse, StubServer
from tests.sync.helpers import assert_one_profile_each, read_errors, run_import, write_jsonl

pytestmark = pytest.mark.django_db

GOOD = [
    {"id": f"p{n}", "traits": {"email": f"p{n}@example.com", "firstname": f"P{n}", "n": n}}
    for n in range(5)
]


@pytest.fixture
def site(experience_emulator: EmulatorHandle, settings: SettingsWrapper) -> EmulatorHandle:
    settings.EXPERIENCE_DESTINATIONS = {
        "experiture": {"url": experience_emulator.url + "/experiture/public/v1",
                       "token": "exp-token", "match_key": "email"},
        "releva": {"url": experience_emulator.url + "/releva/api/v0", "secret_key": "rel-key",
                   "batch_size": 2},
    }
    return experience_emulator


def _fast(*args: str) -> tuple[str, ...]:
    return (*args, "--backoff", "0.01")


def test_experiture_import_reports_bad_rows_and_sends_the_others(
    site: EmulatorHandle, tmp_path: Path
) -> None:
    rows: list[Any] = [
        GOOD[0],
        {"id": "naive", "traits": {"email": "n@example.com", "seen": "2026-04-20T12:00:00"}},
        GOOD[1],
        {"id": "no-email", "traits": {"firstname": "Nobody"}},
        "{not json",
        {"id": "empty", "traits": {}},
        GOOD[2],
    ]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    result = run_import(*_fast("--file", str(source), "--destination", "experiture",
                               "--errors", str(errors)))
    assert result.code == 1
    assert "Profiles sent: 3" in result.stdout and "Rows rejected: 4" in result.stdout
    stored = site.destinations()["experiture"]
    assert sorted(record["email"] for record in stored) == [
        "p0@example.com", "p1@example.com", "p2@example.com"
    ]
    assert stored[0] == {"email": "p0@example.com", "firstname": "P0", "n": 0}
    reported = {entry["line"]: entry["reason"] for entry in read_errors(errors)}
    assert sorted(reported) == [2, 4, 5, 6]
    assert "no time zone" in reported[2] and "seen" in reported[2]
    assert "match key 'email'" in reported[4]
    assert "at least one field" in reported[6]
    assert "line 2 (id naive)" in result.stderr
    assert site.request_count() == 0  # the Experience API was not part of it


def test_releva_import_validates_each_row_and_sends_in_batches(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None
) -> None:
    stub.responder = lambda request: StubResponse(202, {})
    settings.EXPERIENCE_DESTINATIONS = {
        "releva": {"url": stub.url, "secret_key": "rel-key", "batch_size": 2}
    }
    rows: list[Any] = [
        *GOOD[:2],
        {"id": "bad-phone", "traits": {"phone": "0888 123"}},
        {"id": "nobody", "traits": {"firstname": "No Contact"}},
        {"id": "consent", "traits": {"email": "c@example.com", "consent": "sure"}},
        *GOOD[2:],
    ]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    result = run_import(*_fast("--file", str(source), "--destination", "releva",
                               "--batch-size", "10", "--errors", str(errors)))
    assert result.code == 1
    reported = {entry["line"]: entry["reason"] for entry in read_errors(errors)}
    assert sorted(reported) == [3, 4, 5]
    assert "+" in reported[3] and "email or phoneNumber" in reported[4]
    assert "consent" in reported[5]
    bodies = [request.json()["profiles"] for request in stub.requests]
    assert [len(body) for body in bodies] == [2, 2, 1]  # the configured batch size
    assert [entry["profile"]["email"] for body in bodies for entry in body] == [
        f"p{n}@example.com" for n in range(5)
    ]
    first = bodies[0][0]
    assert first == {
        "profile": {"email": "p0@example.com", "firstName": "P0",
                    "custom": {"string": [{"key": "n", "values": ["0"]}]}},
        "subscribedAtChanged": False,
    }
    assert stub.requests[0].header("Authorization") == "Bearer rel-key"


def test_releva_import_into_the_emulator(site: EmulatorHandle, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", GOOD)
    result = run_import(*_fast("--file", str(source), "--destination", "releva"))
    assert result.code == 0, result.stderr
    assert "Profiles sent: 5" in result.stdout
    stored = site.destinations()["releva"]
    assert [profile["email"] for profile in stored] == [f"p{n}@example.com" for n in range(5)]


def test_all_sends_every_row_to_every_destination(site: EmulatorHandle, tmp_path: Path) -> None:
    rows: list[Any] = [*GOOD, {"id": "phone-only", "traits": {"phone": "+359888123"}}]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    result = run_import(*_fast("--file", str(source), "--destination", "all",
                               "--errors", str(errors)))
    assert result.code == 1  # Experiture matches on email: the phone-only row is rejected
    for name in ("experience", "experiture", "releva"):
        assert f"== {name}" in result.stdout
    assert_one_profile_each(site, [row["id"] for row in rows])
    stored = site.destinations()
    assert len(stored["experiture"]) == 5
    assert len(stored["releva"]) == 6
    # One file per destination, each named after it, the first one too.
    assert not errors.exists()
    assert read_errors(Path(f"{errors}.experience")) == []
    assert read_errors(Path(f"{errors}.releva")) == []
    [rejected] = read_errors(Path(f"{errors}.experiture"))
    assert rejected["line"] == 6 and rejected["id"] == "phone-only"
    assert f"see {errors}.<destination>" in result.stderr


def test_rate_limits_and_outages_are_retried(site: EmulatorHandle, tmp_path: Path) -> None:
    emulated.inject_errors("experiture", status=503, times=2)
    source = write_jsonl(tmp_path / "people.jsonl", GOOD)
    result = run_import(*_fast("--file", str(source), "--destination", "experiture"))
    assert result.code == 0, result.stderr
    assert "Retried requests: 2" in result.stdout
    assert len(site.destinations()["experiture"]) == 5

    emulated.inject_errors("releva", status=429, times=1, retry_after="0")
    result = run_import(*_fast("--file", str(source), "--destination", "releva"))
    assert result.code == 0, result.stderr
    assert len(site.destinations()["releva"]) == 5


def test_an_infinite_retry_after_is_unreadable_and_the_backoff_applies(
    site: EmulatorHandle, tmp_path: Path
) -> None:
    # An infinity once reached the pipeline's wait, whose OverflowError broke the import off.
    emulated.inject_errors("releva", status=429, times=1, retry_after="1e400")
    source = write_jsonl(tmp_path / "people.jsonl", GOOD)
    result = run_import(*_fast("--file", str(source), "--destination", "releva"))
    assert result.code == 0, result.stderr
    assert "Retried requests: 1" in result.stdout
    assert len(site.destinations()["releva"]) == 5


def test_a_retried_batch_resends_only_what_was_not_accepted(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None
) -> None:
    answers = iter([200, 200, 503])

    def experiture(request: RecordedRequest) -> StubResponse:
        if next(answers, 200) == 503:
            return StubResponse(503, {"success": False, "error": {"message": "down"}})
        return StubResponse(200, {"success": True, "data": {"accepted": True}})

    stub.responder = experiture
    settings.EXPERIENCE_DESTINATIONS = {"experiture": {"url": stub.url, "token": "t"}}
    source = write_jsonl(tmp_path / "people.jsonl", GOOD)
    result = run_import(*_fast("--file", str(source), "--destination", "experiture"))
    assert result.code == 0, result.stderr
    sent = [request.json()["record"]["email"] for request in stub.requests]
    assert sent == [f"p{n}@example.com" for n in (0, 1, 2, 2, 3, 4)]


def test_a_record_the_platform_answers_not_accepted_is_failed_not_counted_as_sent(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None
) -> None:
    def experiture(request: RecordedRequest) -> StubResponse:
        declined = request.json()["record"]["email"] == "p1@example.com"
        return StubResponse(200, {"success": True, "data": {"accepted": not declined}})

    stub.responder = experiture
    settings.EXPERIENCE_DESTINATIONS = {"experiture": {"url": stub.url, "token": "t"}}
    source = write_jsonl(tmp_path / "people.jsonl", GOOD[:3])
    errors = tmp_path / "errors.jsonl"
    result = run_import(*_fast("--file", str(source), "--destination", "experiture",
                               "--errors", str(errors)))
    assert result.code == 1
    assert "Profiles sent: 2" in result.stdout, result.stdout
    [entry] = read_errors(errors)
    assert entry["line"] == 2 and "did not accept the record" in entry["reason"]
    # Each row once: the declined one is not retried, the one after it is still sent.
    sent = [request.json()["record"]["email"] for request in stub.requests]
    assert sent == ["p0@example.com", "p1@example.com", "p2@example.com"]


def test_resume_sends_only_the_batches_that_failed(site: EmulatorHandle, tmp_path: Path) -> None:
    source = write_jsonl(tmp_path / "people.jsonl", GOOD[:4])
    emulated.inject_errors("experiture", status=503, times=1)
    args = _fast("--file", str(source), "--destination", "experiture", "--batch-size", "2",
                 "--retries", "0")
    first = run_import(*args)
    assert first.code == 1 and "Failures: 2" in first.stdout
    assert sorted(r["email"] for r in site.destinations()["experiture"]) == [
        "p2@example.com", "p3@example.com"
    ]
    second = run_import(*args, "--resume")
    assert second.code == 0, second.stderr
    assert "Profiles sent: 2" in second.stdout
    assert "Skipped (completed by an earlier run): 2" in second.stdout
    assert len(site.destinations()["experiture"]) == 4


def test_an_auth_failure_fails_the_rows_without_retrying(
    site: EmulatorHandle, tmp_path: Path
) -> None:
    emulated.configure(releva_secret_key="the-real-key")
    source = write_jsonl(tmp_path / "people.jsonl", GOOD[:3])
    errors = tmp_path / "errors.jsonl"
    result = run_import(*_fast("--file", str(source), "--destination", "releva",
                               "--errors", str(errors)))
    assert result.code == 1
    assert "Retried requests" not in result.stdout
    reasons = {entry["line"]: entry["reason"] for entry in read_errors(errors)}
    # The first batch (Releva's batch_size, 2) is refused; row 3, when it was read before the
    # refusal arrived, is reported as not sent. Either way every row read is accounted for.
    assert "Unauthorized" in reasons[1] and "Unauthorized" in reasons[2]
    assert sorted(reasons) in ([1, 2], [1, 2, 3])
    assert reasons.get(3, "not sent: the import stopped early") == (
        "not sent: the import stopped early"
    )
    assert f"Rows read: {len(reasons)}" in result.stdout
    assert f"Failures: {len(reasons)}" in result.stdout


def test_a_destination_that_is_not_configured_is_not_offered(
    site: EmulatorHandle, settings: SettingsWrapper, tmp_path: Path
) -> None:
    settings.EXPERIENCE_DESTINATIONS = {"releva": {"secret_key": "k"}}
    source = write_jsonl(tmp_path / "people.jsonl", GOOD[:1])
    result = run_import("--file", str(source), "--destination", "experiture")
    assert result.code == 1
    assert "choose from experience, releva, all" in result.stderr


def test_the_errors_file_is_json_lines_with_the_row(site: EmulatorHandle, tmp_path: Path) -> None:
    bad = {"id": "x", "traits": {"email": "x@example.com", "seen": "2026-01-01T00:00:00"}}
    source = write_jsonl(tmp_path / "people.jsonl", [bad])
    errors = tmp_path / "errors.jsonl"
    run_import("--file", str(source), "--destination", "experiture", "--errors", str(errors))
    [entry] = read_errors(errors)
    assert entry["kind"] == "rejected" and json.loads(entry["row"]) == bad


def test_users_import_adds_each_users_email(
    site: EmulatorHandle, settings: SettingsWrapper
) -> None:
    from django.contrib.auth.models import User

    settings.EXPERIENCE_USER_TRAITS = "tests.middleware.views.user_traits"
    User.objects.create_user("ada", email="ada@example.com", first_name="Ada", is_staff=True)
    User.objects.create_user("bob", first_name="Bob")  # no email: nothing to match on
    result = run_import(*_fast("--users", "--destination", "experiture,releva"))
    assert result.code == 1
    stored = site.destinations()
    assert stored["experiture"] == [{"firstname": "Ada", "tier": "gold",
                                     "email": "ada@example.com"}]
    assert [profile["email"] for profile in stored["releva"]] == ["ada@example.com"]
    assert result.stdout.count("Rows rejected: 1") == 2  # bob, at each destination


def test_resume_with_other_credentials_sends_the_blocks_again(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None
) -> None:
    stub.responder = lambda request: StubResponse(202, {})
    settings.EXPERIENCE_DESTINATIONS = {"releva": {"url": stub.url, "secret_key": "account-a"}}
    source = write_jsonl(tmp_path / "people.jsonl", [*GOOD[:2], "{not json"])
    checkpoint = tmp_path / "import.checkpoint"
    args = ("--file", str(source), "--destination", "releva", "--checkpoint", str(checkpoint))
    assert run_import(*args).code == 1  # the bad line keeps the checkpoint
    assert run_import(*args, "--resume").code == 1
    assert len(stub.requests) == 1  # the same account: the block was not sent twice
    assert "account-a" not in checkpoint.read_text()  # only a hash of it

    settings.EXPERIENCE_DESTINATIONS = {"releva": {"url": stub.url, "secret_key": "account-b"}}
    result = run_import(*args, "--resume")
    assert "Profiles sent: 2" in result.stdout
    assert stub.requests[-1].header("Authorization") == "Bearer account-b"


def test_a_refused_key_stops_the_import_and_resume_sends_everything_once_fixed(
    site: EmulatorHandle, settings: SettingsWrapper, tmp_path: Path
) -> None:
    emulated.configure(releva_secret_key="the-real-key")  # the settings have "rel-key"
    rows = [{"id": f"q{n}", "traits": {"email": f"q{n}@example.com"}} for n in range(6)]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    args = _fast("--file", str(source), "--destination", "releva", "--batch-size", "2")
    first = run_import(*args)
    assert first.code == 1
    assert "Stopped early: releva refused the import: Unauthorized" in first.stdout
    assert "Fix the configuration, then run the same command with --resume" in first.stderr
    assert site.destinations()["releva"] == []

    settings.EXPERIENCE_DESTINATIONS = {
        **settings.EXPERIENCE_DESTINATIONS,
        "releva": {"url": site.url + "/releva/api/v0", "secret_key": "the-real-key"},
    }
    second = run_import(*args, "--resume")
    assert second.code == 0, second.stderr
    assert "Skipped" not in second.stdout
    assert sorted(p["email"] for p in site.destinations()["releva"]) == [
        f"q{n}@example.com" for n in range(6)
    ]


def test_the_errors_file_of_a_resumed_run_still_lists_the_first_runs_refusals(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None
) -> None:
    answers = iter([202, 503])
    stub.responder = lambda request: StubResponse(next(answers, 202), {})
    settings.EXPERIENCE_DESTINATIONS = {"releva": {"url": stub.url, "secret_key": "k"}}
    rows: list[Any] = [GOOD[0], {"id": "bad-phone", "traits": {"phone": "0888"}}, *GOOD[1:3]]
    source = write_jsonl(tmp_path / "people.jsonl", [*rows, "{not json"])
    errors = tmp_path / "errors.jsonl"
    args = _fast("--file", str(source), "--destination", "releva", "--batch-size", "2",
                 "--retries", "0", "--errors", str(errors))
    first = run_import(*args)
    assert first.code == 1
    assert sorted((e["line"], e["kind"]) for e in read_errors(errors)) == [
        (2, "rejected"), (3, "failed"), (4, "failed"), (5, "rejected")
    ]
    second = run_import(*args, "--resume")
    # The first block is not sent again, but its refused row is reported again; the bad line
    # is read again; the failed block was sent.
    assert "Skipped (completed by an earlier run): 1" in second.stdout
    assert sorted((e["line"], e["kind"]) for e in read_errors(errors)) == [
        (2, "rejected"), (5, "rejected")
    ]
    assert "Profiles sent: 2" in second.stdout
    assert len(stub.requests) == 3
    # The row the destination refused before sending is no valid row on resume either.
    assert "Valid rows: 3" in first.stdout and "Valid rows: 3" in second.stdout, second.stdout


@pytest.mark.parametrize("name", ["experiture", "releva"])
def test_a_dry_run_applies_the_destinations_validation_and_sends_nothing(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None, name: str
) -> None:
    settings.EXPERIENCE_DESTINATIONS = {
        "experiture": {"url": stub.url, "token": "t", "match_key": "email"},
        "releva": {"url": stub.url, "secret_key": "k"},
    }
    rows: list[Any] = [
        *GOOD[:2],
        {"id": "phone-only", "traits": {"phone": "0888 123"}},  # refused by both platforms
    ]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    errors = tmp_path / "errors.jsonl"
    result = run_import("--file", str(source), "--destination", name, "--dry-run",
                        "--errors", str(errors))
    assert result.code == 1
    assert "Valid rows: 2 (dry run: nothing sent)" in result.stdout
    assert "Rows rejected: 1" in result.stdout
    assert [(e["line"], e["kind"]) for e in read_errors(errors)] == [(3, "rejected")]
    assert stub.requests == []
    assert not list(tmp_path.glob("*.checkpoint"))


@pytest.mark.parametrize("status", [503, 401])
def test_rows_upserted_before_a_failure_in_their_batch_count_as_sent(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None, status: int
) -> None:
    answers = iter([200, 200, status])

    def experiture(request: RecordedRequest) -> StubResponse:
        answer = next(answers, 200)
        if answer != 200:
            return StubResponse(answer, {"success": False, "error": {"message": "no"}})
        return StubResponse(200, {"success": True, "data": {"accepted": True}})

    stub.responder = experiture
    settings.EXPERIENCE_DESTINATIONS = {"experiture": {"url": stub.url, "token": "t"}}
    source = write_jsonl(tmp_path / "people.jsonl", GOOD)
    errors = tmp_path / "errors.jsonl"
    result = run_import(*_fast("--file", str(source), "--destination", "experiture",
                               "--retries", "0", "--errors", str(errors)))
    assert result.code == 1
    assert "Profiles sent: 2" in result.stdout and "Failures: 3" in result.stdout
    assert [e["line"] for e in read_errors(errors)] == [3, 4, 5]  # not the two accepted


@pytest.mark.parametrize("name", ["experiture", "releva"])
def test_rows_sharing_the_match_key_are_never_in_flight_together(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None, name: str
) -> None:
    import threading
    import time

    lock = threading.Lock()
    in_flight: dict[str, int] = {}
    overlaps: list[str] = []

    def answer(request: RecordedRequest) -> StubResponse:
        body = request.json()
        records = ([body["record"]] if name == "experiture"
                   else [entry["profile"] for entry in body["profiles"]])
        emails = {record.get("email") or record.get("phoneNumber") for record in records}
        with lock:
            for email in emails:
                in_flight[email] = in_flight.get(email, 0) + 1
                if in_flight[email] > 1:
                    overlaps.append(email)
        time.sleep(0.05)
        with lock:
            for email in emails:
                in_flight[email] -= 1
        if name == "releva":
            return StubResponse(202, {})
        return StubResponse(200, {"success": True, "data": {"accepted": True}})

    stub.responder = answer
    settings.EXPERIENCE_DESTINATIONS = {
        "experiture": {"url": stub.url, "token": "t", "match_key": "email",
                       "fields": {"mail": "email", "n": "n"}},
        "releva": {"url": stub.url, "secret_key": "k"},
    }
    # Different ids, the same person: for Experiture the email under a mapped trait name, for
    # Releva the phone number under an alias.
    traits = {"mail": "Shared@Example.com"} if name == "experiture" else {"phone": "+359888"}
    rows = [{"id": f"id-{n}", "traits": {**traits, "n": n}} for n in range(6)]
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    result = run_import(*_fast("--file", str(source), "--destination", name,
                               "--batch-size", "1", "--workers", "4"))
    assert result.code == 0, result.stderr
    assert overlaps == []
    assert len(stub.requests) == 6
    sent = [request.json() for request in stub.requests]
    if name == "experiture":
        order = [body["record"]["n"] for body in sent]
    else:
        order = [int(entry["values"][0]) for body in sent
                 for entry in body["profiles"][0]["profile"]["custom"]["string"]
                 if entry["key"] == "n"]
    assert order == list(range(6))  # one after the other, in row order


def test_releva_batches_follow_its_batch_size_unless_the_import_says_otherwise(
    stub: StubServer, settings: SettingsWrapper, tmp_path: Path, db: None
) -> None:
    stub.responder = lambda request: StubResponse(202, {})
    settings.EXPERIENCE_DESTINATIONS = {"releva": {"url": stub.url, "secret_key": "k"}}
    rows = [{"id": f"r{n}", "traits": {"email": f"r{n}@example.com"}} for n in range(230)]
    source = write_jsonl(tmp_path / "people.jsonl", rows)

    def sizes(*extra: str) -> list[int]:
        stub.requests.clear()
        result = run_import("--file", str(source), "--destination", "releva", *extra)
        assert result.code == 0, result.stderr
        return [len(request.json()["profiles"]) for request in stub.requests]

    assert sizes() == [100, 100, 30]  # its default batch_size, not the import's 50
    assert sizes("--batch-size", "40") == [40] * 5 + [30]
    assert sizes("--batch-size", "150") == [100, 50, 80]  # within batch_size per request
    settings.EXPERIENCE_DESTINATIONS = {
        "releva": {"url": stub.url, "secret_key": "k", "batch_size": 75}
    }
    assert sizes() == [75, 75, 75, 5]
