"""Data protection: a deleted profile is gone remotely and locally; trait values never reach
the logs, whatever fails."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.core.management import CommandError, call_command
from django.db import transaction
from django.test import Client

from django_experience.api.events import page_event
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping
from tests.reliability.test_fault_matrix import FAULTS

pytestmark = pytest.mark.django_db

# The marker is no hex string: a profile id's short form in a log line could hold one.
FIRST_NAME = "ZebulonQzx9"
EMAIL = "zeb.qzx9@example.com"
SECRETS = (FIRST_NAME, EMAIL, "qzx9", "Qzx9")


def _signed_in_visitor(emulator: EmulatorHandle) -> tuple[Client, AbstractBaseUser, str]:
    user = get_user_model().objects.create_user("zeb", email=EMAIL, first_name=FIRST_NAME)
    visitor = Client()
    visitor.get("/page/")
    visitor.post("/sign-in/", {"username": "zeb"})
    page = visitor.get("/page/").content.decode()
    assert f"name=[{FIRST_NAME}]" in page
    (profile_id,) = ProfileMapping.objects.filter(user=user).values_list("profile_id", flat=True)
    stored = emulator.profile(profile_id)
    assert stored is not None and stored["traits"]["email"] == EMAIL
    return visitor, user, profile_id


def _assert_forgotten(emulator: EmulatorHandle, visitor: Client, profile_id: str) -> None:
    assert emulator.profile(profile_id) is None
    assert not ProfileMapping.objects.filter(profile_id=profile_id).exists()
    # The visitor's next page starts afresh: nothing of the deleted profile comes back.
    visitor.post("/sign-out/")
    page = visitor.get("/page/")
    assert page.status_code == 200
    assert FIRST_NAME not in page.content.decode()
    assert all(FIRST_NAME not in json.dumps(p) for p in emulator.profiles())


def test_admin_action_deletes_remotely_and_locally(emulator: EmulatorHandle) -> None:
    visitor, _, profile_id = _signed_in_visitor(emulator)
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    staff = Client()
    staff.force_login(admin)
    mapping = ProfileMapping.objects.get(profile_id=profile_id)
    response = staff.post(
        "/admin/django_experience/profilemapping/",
        {"action": "delete_in_api", "_selected_action": [str(mapping.pk)]},
    )
    assert response.status_code == 302
    assert emulator.request_count("delete") == 1
    _assert_forgotten(emulator, visitor, profile_id)


def test_deleting_the_user_deletes_remotely_and_locally(
    emulator: EmulatorHandle, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    visitor, user, profile_id = _signed_in_visitor(emulator)
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
        assert emulator.profile(profile_id) is not None  # nothing is sent before the commit
    _assert_forgotten(emulator, visitor, profile_id)


def test_a_rolled_back_user_deletion_keeps_the_remote_profile(
    emulator: EmulatorHandle, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    _, user, profile_id = _signed_in_visitor(emulator)
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        user.delete()
        raise RuntimeError("the view failed after deleting the user")
    assert callbacks == []
    assert emulator.request_count("delete") == 0
    assert emulator.profile(profile_id) is not None
    assert ProfileMapping.objects.filter(profile_id=profile_id).exists()


def test_a_user_deletion_deletes_their_profiles_in_every_environment(
    emulator: EmulatorHandle, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    _, user, profile_id = _signed_in_visitor(emulator)
    staging_client = emulator.client(environment="staging")
    staging = staging_client.create_profile([page_event("https://example.com/")]).profile.id
    ProfileMapping.objects.create(
        profile_id=staging, user_id=user.pk, organization_id="test-org", environment="staging"
    )
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert emulator.profile(profile_id) is None and emulator.profile(staging) is None
    assert emulator.stats()["requests"]["delete"] == {"200": 2}


def test_a_failed_remote_delete_is_retried_then_logged_as_an_error_naming_the_profile(
    emulator: EmulatorHandle,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    _, user, profile_id = _signed_in_visitor(emulator)
    settings.EXPERIENCE_MAX_RETRIES = 2
    settings.EXPERIENCE_TIMEOUT = 5.0
    emulator.faults(error_rate=1.0, error_status=503)
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()  # never raises
    emulator.clear_faults()
    assert emulator.stats()["requests"]["delete"] == {"503": 3}  # retried per the policy
    (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = line.getMessage()
    assert line.name == "django_experience"
    assert profile_id in message and "test-org" in message and "status=503" in message
    assert all(secret not in message for secret in SECRETS)
    assert emulator.profile(profile_id) is not None  # still there, as the line says


def test_no_trait_value_reaches_the_logs(
    emulator: EmulatorHandle,
    settings: Any,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
    django_capture_on_commit_callbacks: Any,
) -> None:
    caplog.set_level(logging.DEBUG)
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    visitor, user, profile_id = _signed_in_visitor(emulator)
    settings.EXPERIENCE_TIMEOUT = 0.25  # after the set-up, which must succeed
    people = tmp_path / "people.jsonl"
    people.write_text(
        json.dumps({"id": "zeb-import", "traits": {"email": EMAIL, "firstname": FIRST_NAME}})
        + "\n{broken " + FIRST_NAME + "\n",
        encoding="utf-8",
    )
    for fault in FAULTS.values():
        emulator.faults(**fault)
        assert visitor.get("/page/").status_code == 200
        visitor.post("/track/", {"sku": EMAIL})  # sync delivery fails and reports
        other = Client()
        other.post("/sign-in/", {"username": "zeb"})  # identify fails on sign-in
        assert other.get("/page/").status_code == 200
        with pytest.raises(CommandError):
            call_command("experience_import", file=str(people), retries=0, timeout=0.25,
                         checkpoint=str(tmp_path / "ckpt"), progress_interval=3600,
                         stdout=io.StringIO(), stderr=io.StringIO())
    emulator.clear_faults()
    emulator.stop()  # deleting while the API is down: logged, not raised
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    emulator.start()

    assert caplog.records, "nothing was logged: the test exercised no failure"
    for record in caplog.records:
        text = record.getMessage() + (caplog.text if record is caplog.records[-1] else "")
        for secret in SECRETS:
            assert secret not in text, (record.name, record.getMessage())
    # Our own lines name a profile only by a short prefix (HTTP libraries log URLs at DEBUG);
    # except the error of a remote delete that failed, which must say which profile is left
    # (and that it stays pending, to be retried).
    own = [r for r in caplog.records if r.name.startswith("django_experience")]
    (left,) = [r for r in own if profile_id in r.getMessage()]
    assert left.levelno == logging.ERROR and "to be retried" in left.getMessage()
    assert all(profile_id not in r.getMessage() for r in own if r is not left)
