"""Remote deletions of a deleted user's profiles run off the request thread: the request that
deletes the user returns at once, the background deleter sends the DELETEs (``deletions.wait``
waits for it), a failure stays pending and is reported; the ``sync`` backend stays in-line."""

from __future__ import annotations

import datetime
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client
from django.utils import timezone

from django_experience import deletions
from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import PendingProfileDeletion, ProfileMapping
from tests.reliability.test_data_protection import _signed_in_visitor
from tests.stub_server import StubServer

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parent.parent.parent
WAIT = 60.0  # far beyond what any test here needs: a bound, so that a bug fails, never hangs


@pytest.fixture(autouse=True)
def settled() -> Iterator[None]:
    """Nothing of a test here is in flight when the next one starts (with or without the
    emulator fixture, which waits too)."""
    assert deletions.wait(WAIT)
    yield
    assert deletions.wait(WAIT)


@pytest.fixture
def in_background(settings: Any) -> Any:
    """Deleting users deletes remotely, with the default (``thread``) delivery backend."""
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    settings.EXPERIENCE_DELIVERY = "thread"
    return settings


@pytest.fixture
def black_hole() -> Iterator[str]:
    """The URL of an API that accepts connections and never answers: the socket listens but
    never accepts, so the kernel completes each handshake and nothing ever reads or writes."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        host, port = server.getsockname()[:2]
        yield f"http://{host}:{port}"


def _user_with_profiles(*profile_ids: str) -> AbstractBaseUser:
    """A user with one profile per environment (``env-0``, ``env-1``, ...)."""
    user = get_user_model().objects.create_user("zeb")
    for number, profile_id in enumerate(profile_ids):
        ProfileMapping.objects.create(
            profile_id=profile_id,
            user_id=user.pk,
            organization_id="test-org",
            environment=f"env-{number}",
        )
    return user


def _superuser_client() -> Client:
    admin = get_user_model().objects.create_superuser("admin", "admin@example.com", "pw")
    client = Client()
    client.force_login(admin)
    return client


@pytest.mark.django_db(transaction=True)
def test_the_deleting_request_returns_while_the_api_black_holes(
    in_background: Any, black_hole: str
) -> None:
    in_background.EXPERIENCE_API_URL = black_hole
    in_background.EXPERIENCE_TIMEOUT = 2.0
    in_background.EXPERIENCE_MAX_RETRIES = 0
    user = _user_with_profiles("p-hole-1", "p-hole-2")
    staff = _superuser_client()

    response = staff.post(f"/admin/auth/user/{user.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not get_user_model().objects.filter(pk=user.pk).exists()
    # In-line, the request would have returned only after both DELETEs timed out, each
    # counting its attempt: none has ended yet, so the request did not wait for them.
    assert sorted(PendingProfileDeletion.objects.values_list("profile_id", "attempts")) == [
        ("p-hole-1", 0),
        ("p-hole-2", 0),
    ]
    assert deletions.in_flight() == 2
    assert deletions.wait(WAIT)
    rows = list(PendingProfileDeletion.objects.all())
    assert [(row.attempts, row.last_error) for row in rows] == [(1, "RequestTimeout")] * 2


@pytest.mark.django_db(transaction=True)
def test_rows_are_resolved_once_waited_for(
    emulator: EmulatorHandle, in_background: Any
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    in_background.EXPERIENCE_TIMEOUT = 5.0
    emulator.faults(latency_ms=1000)  # the API answers, slowly

    user.delete()

    assert PendingProfileDeletion.objects.filter(profile_id=profile_id).exists()  # not yet
    assert emulator.profile(profile_id) is not None
    assert deletions.wait(WAIT)
    assert not PendingProfileDeletion.objects.exists()
    emulator.clear_faults()
    assert emulator.profile(profile_id) is None
    assert emulator.stats()["requests"]["delete"] == {"200": 1}


@pytest.mark.django_db(transaction=True)
def test_a_failure_stays_pending_and_warns_with_the_backlog(
    emulator: EmulatorHandle, in_background: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, user, profile_id = _signed_in_visitor(emulator)
    deletions.record([("p-older", "test-org", "main")])  # an earlier one, never deleted
    PendingProfileDeletion.objects.filter(profile_id="p-older").update(
        created_at=timezone.now() - datetime.timedelta(days=3, hours=1)
    )
    in_background.EXPERIENCE_MAX_RETRIES = 1
    in_background.EXPERIENCE_TIMEOUT = 5.0
    emulator.faults(error_rate=1.0, error_status=503)

    user.delete()  # never raises

    assert deletions.wait(WAIT)
    assert emulator.stats()["requests"]["delete"] == {"503": 2}  # this user's profile only
    rows = {row.profile_id: row for row in PendingProfileDeletion.objects.all()}
    assert (rows[profile_id].attempts, rows[profile_id].last_error) == (
        1,
        "ServerError status=503",
    )
    assert rows["p-older"].attempts == 0
    (error,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert profile_id in error.getMessage()  # the per-row line, as in-line
    (warning,) = [r for r in caplog.records if r.levelno == logging.WARNING]
    message = warning.getMessage()
    assert warning.name == "django_experience"
    assert "2 remote profile deletion(s)" in message and "pending in all" in message
    assert "3 days" in message and "manage.py experience_delete_pending" in message
    assert profile_id not in message


@pytest.mark.django_db(transaction=True)
def test_the_sync_backend_deletes_in_line(emulator: EmulatorHandle, settings: Any) -> None:
    settings.EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
    settings.EXPERIENCE_DELIVERY = "sync"  # the test suite's, and scripts'
    _, user, profile_id = _signed_in_visitor(emulator)

    user.delete()

    assert deletions.in_flight() == 0 and deletions.wait(0)  # nothing handed to the thread
    assert emulator.profile(profile_id) is None
    assert not PendingProfileDeletion.objects.exists()


@pytest.mark.django_db
def test_callbacks_run_inside_the_test_transaction_delete_in_line(
    emulator: EmulatorHandle, in_background: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A ``TestCase``-style test running on-commit callbacks before anything committed: the
    thread's own connection could not see the rows, so they are deleted in the caller."""
    _, user, profile_id = _signed_in_visitor(emulator)
    with django_capture_on_commit_callbacks(execute=True):
        user.delete()
    assert deletions.in_flight() == 0 and deletions.wait(0)
    assert emulator.profile(profile_id) is None
    assert not PendingProfileDeletion.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_failing_round_does_not_stop_the_thread(
    emulator: EmulatorHandle, in_background: Any, caplog: pytest.LogCaptureFixture
) -> None:
    deletions.delete_in_background([("p-1", "test-org", "main")], using="nowhere")
    assert deletions.wait(WAIT)  # never raised out of the thread
    (failure,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "could not be attempted" in failure.getMessage() and failure.exc_info
    assert failure.threadName == "experience-deletions"

    _, user, profile_id = _signed_in_visitor(emulator)
    user.delete()
    assert deletions.wait(WAIT)
    assert emulator.profile(profile_id) is None
    assert not PendingProfileDeletion.objects.exists()


@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_has_a_deleter_of_its_own(in_background: Any, black_hole: str) -> None:
    """The parent's thread does not exist in the child: its deletions are the parent's."""
    in_background.EXPERIENCE_API_URL = black_hole
    in_background.EXPERIENCE_TIMEOUT = 2.0
    in_background.EXPERIENCE_MAX_RETRIES = 0
    deletions.record([("p-fork", "test-org", "main")])
    deletions.delete_in_background([("p-fork", "test-org", "main")])
    assert deletions.in_flight() == 1  # its DELETE waits on the black hole
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        os._exit(0 if deletions.in_flight() == 0 and deletions.wait(0) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert deletions.wait(WAIT)
    assert PendingProfileDeletion.objects.get().last_error == "RequestTimeout"


# -- at interpreter exit -------------------------------------------------------------------

EXIT_SETTINGS = """
import os

from tests.settings import *  # noqa: F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.environ["EXIT_DB"]}}
EXPERIENCE_API_URL = os.environ["EXIT_API_URL"]
EXPERIENCE_DELIVERY = "thread"
EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
EXPERIENCE_TIMEOUT = 60.0
EXPERIENCE_MAX_RETRIES = 0
EXPERIENCE_DELIVERY_EXIT_TIMEOUT = 0.5
"""

EXIT_SCRIPT = """
import logging
import sys

import django

logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
django.setup()

from django.contrib.auth import get_user_model
from django.core.management import call_command

from django_experience.models import ProfileMapping

call_command("migrate", verbosity=0)
user = get_user_model().objects.create_user("zeb")
ProfileMapping.objects.create(
    profile_id="p-exit", user_id=user.pk, organization_id="test-org", environment="main"
)
user.delete()
print("deleted", flush=True)
"""


def _run_exit_script(
    tmp_path: Path, settings: str, script: str, api_url: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` in a process of its own with ``settings`` (``exit_settings``), its
    database in ``tmp_path/exit.db`` and the API at ``api_url``."""
    (tmp_path / "exit_settings.py").write_text(settings, encoding="utf-8")
    (tmp_path / "script.py").write_text(script, encoding="utf-8")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "exit_settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)]),
        "EXIT_DB": str(tmp_path / "exit.db"),
        "EXIT_API_URL": api_url,
    }
    return subprocess.run(
        [sys.executable, str(tmp_path / "script.py")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )


def test_exit_waits_a_bounded_time_then_leaves_the_rest_pending(
    tmp_path: Path, black_hole: str
) -> None:
    database = tmp_path / "exit.db"
    # In-line, the DELETE would wait out its 60 s budget; unbounded at exit, too.
    done = _run_exit_script(tmp_path, EXIT_SETTINGS, EXIT_SCRIPT, black_hole)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "deleted\n"
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert "Exiting with the Experience API deletes of 1 profile(s)" in line
    assert "pending" in line and "manage.py experience_delete_pending" in line
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT profile_id, attempts FROM django_experience_pendingprofiledeletion"
        ).fetchall()
    assert rows == [("p-exit", 0)]  # safe in the outbox



SHARED_EXIT_SCRIPT = """
import atexit
import sys
import time

import django

django.setup()
ended = []
atexit.register(lambda: print(f"exit handlers took {time.monotonic() - ended[0]:.2f}", flush=True))

from django.contrib.auth import get_user_model
from django.core.management import call_command

from django_experience import delivery
from django_experience.api.events import track_event
from django_experience.models import ProfileMapping

call_command("migrate", verbosity=0)
delivery.send("p-events", track_event("Waits at exit"))  # its request meets the black hole too
user = get_user_model().objects.create_user("zeb")
ProfileMapping.objects.create(
    profile_id="p-exit", user_id=user.pk, organization_id="test-org", environment="main"
)
user.delete()
ended.append(time.monotonic())
"""


def test_delivery_and_deletions_share_one_exit_budget(tmp_path: Path, black_hole: str) -> None:
    settings = (
        EXIT_SETTINGS.replace("EXIT_TIMEOUT = 0.5", "EXIT_TIMEOUT = 1.5")
        # Delivery retries its black-holed request until the deadline stops it.
        + "EXPERIENCE_DELIVERY_TIMEOUT = 0.2\nEXPERIENCE_DELIVERY_MAX_RETRIES = 100\n"
        + "EXPERIENCE_DELIVERY_BACKOFF = 0.01\nEXPERIENCE_DELIVERY_BACKOFF_MAX = 0.01\n"
    )
    done = _run_exit_script(tmp_path, settings, SHARED_EXIT_SCRIPT, black_hole)
    assert done.returncode == 0, done.stderr
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("exit handlers")]
    # One 1.5 s budget for both (plus the delivery round in flight, 0.2 s): each in turn would
    # take 3 s and more.
    assert float(line.split()[-1]) < 2.6, done.stderr

# -- the pytest plugin ---------------------------------------------------------------------

FIXTURE_SETTINGS = """
import os

from tests.settings import *  # noqa: F403

EXPERIENCE_API_URL = os.environ["SITE_API_URL"]  # the site's own API: never to be reached
EXPERIENCE_DELIVERY = "thread"
EXPERIENCE_DELETE_REMOTE_ON_USER_DELETE = True
EXPERIENCE_TIMEOUT = 5.0
"""

FIXTURE_TESTS = """
import time

import pytest
from django.contrib.auth import get_user_model

from django_experience.api.events import page_event
from django_experience.models import PendingProfileDeletion, ProfileMapping

DELETES_BY_THE_END = []


@pytest.fixture
def deletes_after_teardown(experience_emulator_server):
    yield
    # Requested before experience_emulator, so torn down after it: what the emulator served.
    requests = experience_emulator_server.state.stats_json()["requests"]
    DELETES_BY_THE_END.append(dict(requests.get("delete", {})))


@pytest.mark.django_db(transaction=True)
def test_a_deletes_a_user_while_the_api_is_slow(deletes_after_teardown, experience_emulator):
    user = get_user_model().objects.create_user("zeb")
    for environment in ("main", "staging"):
        client = experience_emulator.client(environment=environment)
        profile = client.create_profile([page_event("https://example.com/")]).profile.id
        ProfileMapping.objects.create(
            profile_id=profile, user_id=user.pk, organization_id="test-org",
            environment=environment,
        )
    experience_emulator.faults(latency_ms=1000)
    user.delete()
    assert PendingProfileDeletion.objects.count() == 2  # in the background: not sent yet


def test_b_never_meets_them(experience_emulator):
    assert DELETES_BY_THE_END == [{"200": 2}]  # both sent within test a, to its emulator
    time.sleep(1.5)  # a DELETE left over would arrive meanwhile
    assert experience_emulator.request_count("delete") == 0
"""


def test_the_fixture_waits_for_the_deletions_of_each_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(deletion_settings=FIXTURE_SETTINGS, test_deletions=FIXTURE_TESTS)
    with StubServer() as site_api:
        monkeypatch.setenv("SITE_API_URL", site_api.url)
        result = pytester.runpytest_subprocess(
            "-p", "no:cacheprovider", "-o", f"pythonpath={ROOT} {pytester.path}",
            "--ds=deletion_settings", "-q",
        )
        result.assert_outcomes(passed=2)
        assert site_api.requests == []
