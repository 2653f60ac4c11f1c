"""Delivery across process boundaries: flush at interpreter exit and a fresh queue after fork()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.delivery.helpers import sent_events
from tests.stub_server import StubResponse, StubServer

ROOT = Path(__file__).resolve().parents[2]


def run_script(api: StubServer, body: str, **env: str) -> subprocess.CompletedProcess[str]:
    script = "import django\ndjango.setup()\n" + textwrap.dedent(body)
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.delivery.script_settings",
            "TEST_API_URL": api.url,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_queued_events_are_flushed_at_exit(api: StubServer) -> None:
    # A flush interval of 30 s: without the exit flush nothing would be sent before exit.
    result = run_script(
        api,
        """
        from django_experience import delivery
        from tests.delivery.helpers import track
        for n in range(5):
            delivery.enqueue(track("profile-exit", n=n))
        print(delivery.counters()["sent"])
        """,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "0"  # still queued when the script's code ended
    assert [e["properties"]["n"] for e in sent_events(api)] == [0, 1, 2, 3, 4]


def test_exit_flush_is_bounded_when_the_api_hangs(api: StubServer) -> None:
    api.responder = lambda request: StubResponse(200, {}, delay=20)
    started = time.monotonic()
    result = run_script(
        api,
        """
        from django_experience import delivery
        from tests.delivery.helpers import track
        delivery.enqueue(track("profile-exit"))
        """,
        EXPERIENCE_DELIVERY_EXIT_TIMEOUT="1",
        EXPERIENCE_DELIVERY_TIMEOUT="2",
    )
    assert result.returncode == 0, result.stderr
    # 1 s exit budget, then the request in flight ends at its 2 s timeout (+ start-up), not
    # the 20 s hang; the event is given up on, not dropped silently.
    assert time.monotonic() - started < 12
    assert "gave up on 1 event(s) (out of time while retrying)" in result.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_child_after_fork_gets_a_fresh_queue_and_thread(api: StubServer) -> None:
    result = run_script(
        api,
        """
        import os, sys
        from django_experience import delivery
        from tests.delivery.helpers import track
        # Started in the parent, then still queued (30 s interval) at fork time.
        delivery.enqueue(track("parent", n=0))
        pid = os.fork()
        if pid == 0:
            delivery.enqueue(track("child", n=1))
            ok = delivery.flush(timeout=20)
            counts = delivery.counters()
            # the parent's queued event is not the child's to send
            sys.exit(0 if ok and counts["sent"] == 1 and counts["queued"] == 1 else 3)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        delivery.enqueue(track("parent", n=2))
        """,
    )
    assert result.returncode == 0, result.stderr
    events = sent_events(api)
    assert sorted((e["anonymousId"], e["properties"]["n"]) for e in events) == [
        ("child", 1),
        ("parent", 0),
        ("parent", 2),
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")
def test_forked_child_flushes_at_its_own_exit(api: StubServer) -> None:
    result = run_script(
        api,
        """
        import os
        from django_experience import delivery
        from tests.delivery.helpers import track
        delivery.enqueue(track("parent", n=0))
        assert delivery.flush(timeout=20)
        pid = os.fork()
        if pid == 0:
            delivery.enqueue(track("child", n=1))
            raise SystemExit(0)  # atexit runs in the child too
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, status
        """,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(e["anonymousId"] for e in sent_events(api)) == ["child", "parent"]
