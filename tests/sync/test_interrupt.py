"""Ctrl-C during an import, then --resume: a real process, a real SIGINT."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pytest

from django_experience.emulator.handle import EmulatorHandle
from tests.sync.helpers import assert_one_profile_each, people, write_jsonl

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGINT delivery")


def _default_sigint() -> None:
    # A runner started in the background inherits an ignored SIGINT: Ctrl-C must count.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _import_command(
    emulator: EmulatorHandle, database_url: str, tmp_path: Path, rows: int
) -> tuple[list[str], dict[str, str], list[str]]:
    """The import command of ``rows`` people on a migrated database, its environment and ids."""
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.sync.subprocess_settings",
        "TEST_DATABASE_URL": database_url,
        "EXPERIENCE_API_URL": emulator.url,
    }
    django = [sys.executable, "-m", "django"]
    subprocess.run([*django, "migrate", "-v", "0"], env=env, check=True, timeout=60)
    written = people(rows)
    source = write_jsonl(tmp_path / "people.jsonl", written)
    command = [*django, "experience_import", "--file", str(source), "--batch-size", "5"]
    return command, env, [row["id"] for row in written]


def _start(command: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_default_sigint,
    )


def _lines(stream: IO[str]) -> queue.Queue[str]:
    """The stream's lines as they come (read by a thread: a hung process must not hang us)."""
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in stream:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    return lines


def _wait_for_line(lines: queue.Queue[str], text: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            break
        seen.append(line)
        if text in line:
            return
    raise AssertionError(f"no line with {text!r} in {seen}")


def test_interrupted_import_resumes_where_it_stopped(
    emulator: EmulatorHandle, subprocess_database_url: str, tmp_path: Path
) -> None:
    command, env, ids = _import_command(emulator, subprocess_database_url, tmp_path, 40)
    emulator.faults(latency_ms=150)

    process = _start(command, env)
    deadline = time.monotonic() + 30
    while emulator.request_count("batch") < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 130, stderr
    assert "Stopping after the batches in flight" in stderr
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
    assert_one_profile_each(emulator, ids)


def test_a_second_ctrl_c_quits_at_once_while_a_request_hangs(
    emulator: EmulatorHandle, subprocess_database_url: str, tmp_path: Path
) -> None:
    command, env, ids = _import_command(emulator, subprocess_database_url, tmp_path, 20)
    emulator.faults(latency_ms=15_000)  # far beyond how long the process may take to quit

    process = _start(command, env)
    try:
        assert process.stderr is not None
        lines = _lines(process.stderr)
        _wait_for_line(lines, "rows read")  # the import runs: its Ctrl-C handling is in place
        # "rows read" comes before the first request starts. A Ctrl-C then would leave nothing
        # in flight: the import would end at once, and the second Ctrl-C meet Python's own
        # handler as it was put back. So the first waits for a request to be held (15 s).
        deadline = time.monotonic() + 30
        while emulator.received_count("batch") < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert emulator.received_count("batch") >= 1, "no batch request reached the emulator"
        process.send_signal(signal.SIGINT)
        _wait_for_line(lines, "Stopping after the batches in flight")
        process.send_signal(signal.SIGINT)
        process.wait(timeout=10)
        _wait_for_line(lines, "Quit: run again with --resume")
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130

    emulator.clear_faults()
    resumed = subprocess.run(
        [*command, "--resume"], env=env, capture_output=True, text=True, timeout=60
    )
    assert resumed.returncode == 0, resumed.stderr
    assert_one_profile_each(emulator, ids)
