"""The outbox of remote deletions: a deleted user's profile that the API did not delete stays
pending (durably, in the deletion's own transaction) until a retry deletes it."""

from __future__ import annotations

import io
import logging
from typing import Any

import pytest
from django.contrib.admin.models import DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Permission
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client

from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import PendingProfileDeletion, ProfileMapping
from tests.reliability.test_data_protection import SECRETS, _signed_in_visitor

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/django_experience/pendingprofiledeletion/"


@pytest.fixture
def deleting(settings: Any) -> Any:
    """Deletions here are sent in-line: by the suite's ``sync`` delivery backend, and because
    the captured on-commit callbacks run inside the test's transaction (the background thread
    is covered by test_background_deletions)."""
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    return settings


def _failing_api(emulator: EmulatorHandle, settings: Any) -> None:
    settings.EXPERIENCE_MAX_RETRIES = 1
    settings.EXPERIENCE_TIMEOUT = 5.0
    emulator.faults(error_rate=1.0, error_status=503)


def _delete_while_failing(
    emulator: EmulatorHandle, settings: Any, user: AbstractBaseUser, capture: Any
) -> None:
    _failing_api(emulator, settings)
    with capture(execute=True):
        user.delete()  # never raises


def _run_command() -> tuple[str, CommandError | None]:
    out = io.StringIO()
    try:
        call_command("experience_delete_pending", stdout=out, stderr=io.StringIO())
    except CommandError as exc:
        return out.getvalue(), exc
    return out.getvalue(), None


def test_a_failed_remote_delete_stays_pending_with_its_attempt_and_error(
    emulator: EmulatorHandle,
    deleting: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    _delete_while_failing(emulator, deleting, user, django_capture_on_commit_callbacks)
    assert emulator.stats()["requests"]["delete"] == {"503": 2}  # retried per the policy
    row = PendingProfileDeletion.objects.get()
    assert (row.profile_id, row.organization_id, row.environment) == (
        profile_id,
        "test-org",
        "main",
    )
    assert row.attempts == 1 and row.last_attempt_at is not None
    assert row.last_error == "ServerError status=503"
    assert not ProfileMapping.objects.filter(profile_id=profile_id).exists()  # gone with the user
    assert emulator.profile(profile_id) is not None
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = line.getMessage()
    assert profile_id in message and "retried" in message and "experience_delete_pending" in message
    assert "by hand" not in message
    for secret in SECRETS:
        assert secret not in message and secret not in row.last_error


def test_the_command_retries_until_the_api_answers(
    emulator: EmulatorHandle, deleting: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    _delete_while_failing(emulator, deleting, user, django_capture_on_commit_callbacks)

    out, error = _run_command()  # still failing: counted, kept, non-zero exit
    assert error is not None and error.returncode == 1
    assert "0 profile(s) deleted in the Experience API, 1 still pending." in out
    assert PendingProfileDeletion.objects.get().attempts == 2

    emulator.clear_faults()
    out, error = _run_command()
    assert error is None
    assert "1 profile(s) deleted in the Experience API, 0 still pending." in out
    assert not PendingProfileDeletion.objects.exists()
    assert emulator.profile(profile_id) is None

    out, error = _run_command()  # nothing left to do
    assert error is None and "No profile deletions pending." in out


def test_the_command_stops_calling_an_api_that_failed_three_times_in_a_row(
    emulator: EmulatorHandle, settings: Any
) -> None:
    # Each DELETE would wait EXPERIENCE_TIMEOUT: thousands of them, a run of hours overlapping
    # the next run from cron.
    for n in range(7):
        PendingProfileDeletion.objects.create(
            profile_id=f"gone-{n}", organization_id="test-org", environment="main"
        )
    settings.EXPERIENCE_MAX_RETRIES = 0
    emulator.faults(error_rate=1.0, error_status=503)
    out, error = _run_command()
    assert error is not None and error.returncode == 1
    assert emulator.request_count("delete") == 3
    assert (
        "0 profile(s) deleted in the Experience API, 7 still pending (4 not tried: the "
        "Experience API failed 3 times in a row)." in out
    )
    assert sorted(PendingProfileDeletion.objects.values_list("attempts", flat=True)) == [
        0, 0, 0, 0, 1, 1, 1,
    ]
    emulator.clear_faults()
    out, error = _run_command()
    assert error is None and "7 profile(s) deleted in the Experience API, 0 still pending." in out


def test_a_deletion_whose_callback_never_ran_is_still_pending(
    emulator: EmulatorHandle, deleting: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """The process died between the commit and the on-commit DELETE: nothing is lost."""
    _, user, profile_id = _signed_in_visitor(emulator)
    with django_capture_on_commit_callbacks(execute=False):
        user.delete()
    assert emulator.request_count("delete") == 0
    assert PendingProfileDeletion.objects.get().attempts == 0
    _, error = _run_command()
    assert error is None
    assert emulator.profile(profile_id) is None
    assert not PendingProfileDeletion.objects.exists()


def test_a_successful_delete_leaves_no_pending_row(
    emulator: EmulatorHandle, deleting: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
        assert PendingProfileDeletion.objects.count() == 1  # written with the deletion
    assert emulator.stats()["requests"]["delete"] == {"200": 1}
    assert emulator.profile(profile_id) is None
    assert not PendingProfileDeletion.objects.exists()


def test_a_profile_already_gone_leaves_no_pending_row(
    emulator: EmulatorHandle, deleting: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    emulator.client().delete_profile(profile_id)  # deleted elsewhere meanwhile
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
        assert PendingProfileDeletion.objects.filter(profile_id=profile_id).exists()
    assert emulator.stats()["requests"]["delete"] == {"200": 1, "404": 1}
    assert not PendingProfileDeletion.objects.exists()


def test_a_rolled_back_user_deletion_leaves_no_pending_row(
    emulator: EmulatorHandle, deleting: Any, django_capture_on_commit_callbacks: Any
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        user.delete()
        assert PendingProfileDeletion.objects.count() == 1
        raise RuntimeError("the view failed after deleting the user")
    assert callbacks == []
    assert not PendingProfileDeletion.objects.exists()
    assert emulator.request_count("delete") == 0
    assert emulator.profile(profile_id) is not None


def test_an_unreachable_api_is_recorded_without_trait_values(
    emulator: EmulatorHandle,
    deleting: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    _, user, profile_id = _signed_in_visitor(emulator)
    deleting.EXPERIENCE_MAX_RETRIES = 0
    emulator.stop()
    try:
        with django_capture_on_commit_callbacks(execute=True):
            user.delete()
    finally:
        emulator.start()
    row = PendingProfileDeletion.objects.get(profile_id=profile_id)
    assert row.attempts == 1 and row.last_error == "ConnectionFailed"
    for secret in SECRETS:
        assert secret not in caplog.text


# -- the admin -------------------------------------------------------------------------------


@pytest.fixture
def pending_row(
    emulator: EmulatorHandle, deleting: Any, django_capture_on_commit_callbacks: Any
) -> PendingProfileDeletion:
    _, user, _profile_id = _signed_in_visitor(emulator)
    _delete_while_failing(emulator, deleting, user, django_capture_on_commit_callbacks)
    return PendingProfileDeletion.objects.get()


def _staff(superuser: bool = True, *codenames: str) -> Client:
    model = get_user_model()
    if superuser:
        user = model.objects.create_superuser("admin", "admin@example.com", "pw")
    else:
        user = model.objects.create_user("editor", password="pw", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def _retry(client: Client, row: PendingProfileDeletion) -> Any:
    return client.post(
        CHANGELIST, {"action": "retry_deletion", "_selected_action": [row.pk]}, follow=True
    )


def test_the_admin_lists_pending_deletions_read_only(pending_row: PendingProfileDeletion) -> None:
    staff = _staff()
    page = staff.get(CHANGELIST)
    assert page.status_code == 200
    html = page.content.decode()
    assert pending_row.profile_id[:6] + "…" in html
    assert "test-org / main" in html and "ServerError status=503" in html
    actions = dict(page.context["action_form"].fields["action"].choices)
    assert "retry_deletion" in actions
    assert staff.get(f"{CHANGELIST}add/").status_code == 403
    change = staff.get(f"{CHANGELIST}{pending_row.pk}/change/")
    assert change.status_code == 200 and pending_row.profile_id in change.content.decode()
    staff.post(f"{CHANGELIST}{pending_row.pk}/change/", {"attempts": "0", "last_error": ""})
    assert PendingProfileDeletion.objects.get().attempts == 1


def test_the_admin_retry_action_keeps_a_failure_then_deletes(
    pending_row: PendingProfileDeletion, emulator: EmulatorHandle
) -> None:
    staff = _staff()
    failed = _retry(staff, pending_row)
    assert "1 profile could not be deleted" in failed.content.decode()
    assert PendingProfileDeletion.objects.get().attempts == 2

    emulator.clear_faults()
    done = _retry(staff, pending_row)
    assert "1 profile deleted in the Experience API" in done.content.decode()
    assert not PendingProfileDeletion.objects.exists()
    assert emulator.profile(pending_row.profile_id) is None
    (entry,) = LogEntry.objects.filter(action_flag=DELETION)
    assert entry.object_id == str(pending_row.pk)


def test_the_retry_action_needs_the_delete_permission(
    pending_row: PendingProfileDeletion, emulator: EmulatorHandle
) -> None:
    emulator.clear_faults()
    viewer = _staff(False, "view_pendingprofiledeletion")
    page = viewer.get(CHANGELIST)
    assert page.status_code == 200
    form = page.context["action_form"]  # None: no action left to offer
    assert form is None or "retry_deletion" not in dict(form.fields["action"].choices)
    deletes = emulator.request_count("delete")
    viewer.post(CHANGELIST, {"action": "retry_deletion", "_selected_action": [pending_row.pk]})
    assert emulator.request_count("delete") == deletes
    assert PendingProfileDeletion.objects.exists()


def test_an_operator_may_drop_a_row_deleted_by_hand(pending_row: PendingProfileDeletion) -> None:
    staff = _staff()
    response = staff.post(f"{CHANGELIST}{pending_row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not PendingProfileDeletion.objects.exists()


def test_the_retry_action_stops_calling_an_api_that_failed_three_times_in_a_row(
    pending_row: PendingProfileDeletion, emulator: EmulatorHandle, settings: Any
) -> None:
    settings.EXPERIENCE_MAX_RETRIES = 0
    for n in range(5):
        PendingProfileDeletion.objects.create(
            profile_id=f"gone-{n}", organization_id="test-org", environment="main"
        )
    deletes = emulator.request_count("delete")
    response = _staff().post(
        CHANGELIST,
        {"action": "retry_deletion",
         "_selected_action": list(PendingProfileDeletion.objects.values_list("pk", flat=True))},
        follow=True,
    )
    text = response.content.decode()
    assert emulator.request_count("delete") - deletes == 3
    assert "3 profiles could not be deleted" in text
    assert "3 selected rows were not tried: the Experience API failed 3 times in a row" in text
    assert PendingProfileDeletion.objects.count() == 6


def test_the_command_reads_the_pending_rows_a_page_at_a_time(
    emulator: EmulatorHandle, settings: Any
) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    PendingProfileDeletion.objects.bulk_create(
        PendingProfileDeletion(
            profile_id=f"gone-{n}", organization_id="test-org", environment="main"
        )
        for n in range(150)
    )
    settings.EXPERIENCE_MAX_RETRIES = 0
    emulator.faults(error_rate=1.0, error_status=503)
    with CaptureQueriesContext(connection) as queries:
        out, _ = _run_command()
    assert "150 still pending (147 not tried" in out
    table = PendingProfileDeletion._meta.db_table
    reads = [
        q["sql"] for q in queries
        if q["sql"].startswith("SELECT") and table in q["sql"] and "COUNT(" not in q["sql"]
    ]
    assert reads and all("LIMIT 100" in sql for sql in reads), reads
