"""Emulator: requests per second for create and update (its own process, this machine's cores).

The emulator runs as ``python -m django_experience.emulator`` in a child process; a load
generator of kept-alive ``http.client`` connections in threads drives it. The same generator
against the raw benchmark stub gives its ceiling, so a low number can be told apart from a slow
generator.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

from benchmarks.common import ROOT, StubProcess, table, write_result

CONNECTIONS = 4
PREFIX = "/v2/organizations/bench-org/environments/main"


def _body(n: int) -> bytes:
    event = {
        "type": "page", "channel": "server", "messageId": str(uuid.uuid4()),
        "timestamp": "2026-01-01T00:00:00.000Z",
        "properties": {"url": f"http://shop.test/p/{n}", "path": f"/p/{n}", "title": "",
                       "referrer": "", "search": "", "query": {}},
        "context": {"library": {"name": "bench", "version": "1"},
                    "page": {"url": f"http://shop.test/p/{n}", "path": f"/p/{n}",
                             "referrer": "", "search": "", "query": {}},
                    "locale": "en-US", "userAgent": "bench"},
    }
    return json.dumps({"events": [event]}).encode()


def _drive(port: int, duration: float, target_for: Any) -> tuple[float, int, int]:
    """Requests/s (ok answers), ok count and error count over ``duration`` seconds."""
    counts = [[0, 0] for _ in range(CONNECTIONS)]
    stop = time.perf_counter() + duration

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        body = _body(slot)
        headers = {"Content-Type": "text/plain"}
        n = 0
        while time.perf_counter() < stop:
            connection.request("POST", target_for(slot, n), body=body, headers=headers)
            answer = connection.getresponse()
            answer.read()
            counts[slot][0 if answer.status == 200 else 1] += 1
            n += 1
        connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(CONNECTIONS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ok = sum(c[0] for c in counts)
    return ok / elapsed, ok, sum(c[1] for c in counts)


def _start_emulator() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "django_experience.emulator", "--port", "0"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"http://127\.0\.0\.1:(\d+)", line)
    if not match:
        process.kill()
        raise RuntimeError(f"the emulator did not start: {line!r}")
    return process, int(match.group(1))


def _create_profiles(port: int, count: int) -> list[str]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    ids = []
    for n in range(count):
        connection.request("POST", f"{PREFIX}/profiles", body=_body(n))
        ids.append(json.loads(connection.getresponse().read())["data"]["profile"]["id"])
    connection.close()
    return ids


def run(options: argparse.Namespace) -> dict[str, Any]:
    duration = options.duration or (2.0 if options.quick else 5.0)
    process, port = _start_emulator()
    try:
        create_rate, create_ok, create_errors = _drive(
            port, duration, lambda slot, n: f"{PREFIX}/profiles")
        ids = _create_profiles(port, CONNECTIONS * 50)
        # Each connection updates its own profiles: no contention for one profile's lock.
        update_rate, update_ok, update_errors = _drive(
            port, duration, lambda slot, n: f"{PREFIX}/profiles/{ids[slot * 50 + n % 50]}")
    finally:
        process.terminate()
        process.wait(10)
    with StubProcess("page") as stub:
        ceiling, _, _ = _drive(stub.port, duration, lambda slot, n: f"{PREFIX}/profiles")
    rows: list[list[object]] = [
        ["create profile", f"{create_rate:,.0f}", create_ok, create_errors],
        ["update profile", f"{update_rate:,.0f}", update_ok, update_errors],
        ["(generator ceiling: raw stub)", f"{ceiling:,.0f}", "", ""],
    ]
    print(table(f"Emulator throughput, {CONNECTIONS} kept-alive connections, {duration:g}s each, "
                f"{os.cpu_count()} cores", ["request", "requests/s", "ok", "errors"], rows))
    result = {
        "connections": CONNECTIONS,
        "duration_s": duration,
        "create": {"per_s": create_rate, "ok": create_ok, "errors": create_errors},
        "update": {"per_s": update_rate, "ok": update_ok, "errors": update_errors},
        "generator_ceiling_per_s": ceiling,
        "met": create_errors == 0 and update_errors == 0,
    }
    print(f"-> {write_result('emulator', result)}")
    return result
