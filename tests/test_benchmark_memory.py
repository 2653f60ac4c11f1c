"""The import benchmark compares peak memory of child processes: each must report its own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_child_reports_its_own_peak_not_its_parents() -> None:
    ballast = bytearray(300 * 1024 * 1024)
    for offset in range(0, len(ballast), 4096):  # touch every page: resident, not just mapped
        ballast[offset] = 1
    child = subprocess.run(
        [sys.executable, "-c", "from benchmarks.common import peak_rss_kib; print(peak_rss_kib())"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    del ballast
    # A bare interpreter stays far below the parent's 300 MiB.
    assert int(child.stdout) < 100 * 1024
