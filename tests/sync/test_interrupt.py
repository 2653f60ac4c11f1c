"""Ctrl-C during an import, then --resume: a real process, a real SIGINT."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from django_experience.emulator.handle import EmulatorHandle
from tests.sync.helpers import assert_one_profile_each, people, write_jsonl

ROOT = Path(__file__).resolve().parents[2]


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGINT delivery")
def test_interrupted_import_resumes_where_it_stopped(
    emulator: EmulatorHandle, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.sync.subprocess_settings",
        "TEST_DATABASE_FILE": str(tmp_path / "db.sqlite3"),
        "EXPERIENCE_API_URL": emulator.url,
    }
    django = [sys.executable, "-m", "django"]
    subprocess.run([*django, "migrate", "-v", "0"], env=env, check=True, timeout=60)
    rows = people(40)
    source = write_jsonl(tmp_path / "people.jsonl", rows)
    command = [*django, "experience_import", "--file", str(source), "--batch-size", "5"]
    emulator.faults(latency_ms=150)

    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A runner started in the background inherits an ignored SIGINT: Ctrl-C must count.
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 30
    while emulator.request_count("batch") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Interrupted: run again with --resume" in stdout
    first_run = emulator.request_count("batch")
    assert first_run < 8  # it really stopped early

    emulator.clear_faults()
    resumed = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Skipped (completed by an earlier run)" in resumed.stdout
    # Eight batches in all; at most the one cut off mid-way is sent twice.
    assert 8 <= emulator.request_count("batch") <= 9
    assert_one_profile_each(emulator, [row["id"] for row in rows])
