"""What every benchmark shares: the stub process, tables, JSON results, Django set-up."""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


class StubProcess:
    """``benchmarks.stub`` in a child process; ``.url`` is its base URL."""

    def __init__(self, mode: str = "page", delay_ms: float = 0.0) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.stub", "--mode", mode, "--delay-ms", str(delay_ms)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.strip():
            self.process.kill()
            raise RuntimeError("the benchmark stub did not start")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}"

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/__stats__", timeout=10) as answer:
            data: dict[str, Any] = json.load(answer)
        return data

    def last_request(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "/__last__", timeout=10) as answer:
            data: dict[str, Any] = json.load(answer)
        return data

    def reset(self) -> None:
        request = urllib.request.Request(self.url + "/__reset__", data=b"", method="POST")
        with urllib.request.urlopen(request, timeout=10):
            pass

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(10)

    def __enter__(self) -> StubProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def setup_django(**overrides: Any) -> None:
    """Configure Django with ``benchmarks.settings`` (plus ``overrides``) and migrate."""
    os.environ["DJANGO_SETTINGS_MODULE"] = "benchmarks.settings"
    # Failures are expected in some benchmarks: keep their log lines off the tables.
    quiet = logging.getLogger("django_experience")
    quiet.addHandler(logging.NullHandler())
    quiet.propagate = False
    import django
    from django.conf import settings

    if not settings.configured or not hasattr(setup_django, "done"):
        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        setup_django.done = True  # type: ignore[attr-defined]
        # Each benchmark process has a database file of its own: leave none behind.
        atexit.register(_remove_database, str(settings.DATABASES["default"]["NAME"]))
    for name, value in overrides.items():
        setattr(settings, name, value)


def _remove_database(path: str) -> None:
    from django.db import connections

    connections.close_all()
    with contextlib.suppress(OSError):
        os.unlink(path)


@contextmanager
def settings_override(**values: Any) -> Iterator[None]:
    from django.test import override_settings

    with override_settings(**values):
        yield


def peak_rss_kib() -> int:
    """This process's own peak resident set size in KiB.

    ``VmHWM`` on Linux: ``getrusage``'s ``ru_maxrss`` survives ``execve``, so a child started by
    a large parent would report the parent's peak as its own.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def percentile(samples: Sequence[float], fraction: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def median(samples: Sequence[float]) -> float:
    return statistics.median(samples) if samples else float("nan")


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table."""
    cells = [[str(c) for c in header], *[[_cell(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = [title, "-" * len(title)]
    for n, row in enumerate(cells):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def write_result(name: str, data: dict[str, Any]) -> Path:
    """``benchmarks/results/NAME-<timestamp>.json`` and ``NAME-latest.json``."""
    RESULTS.mkdir(exist_ok=True)
    now = datetime.now(timezone.utc)
    document = {
        "benchmark": name,
        "measured_at": now.isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        **data,
    }
    text = json.dumps(document, indent=2, sort_keys=False, default=str)
    path = RESULTS / f"{name}-{now.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.write_text(text + "\n", encoding="utf-8")
    (RESULTS / f"{name}-latest.json").write_text(text + "\n", encoding="utf-8")
    return path


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


class Timer:
    def __init__(self) -> None:
        self.started = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started
