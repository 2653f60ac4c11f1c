"""Bulk import: profiles per second with 1, 2, 4, 8 workers vs the official Node client.

Both feed the same stub (its own process; the batch endpoint answers one profile per
``anonymousId``) from the same JSONL file. Ours is ``manage.py experience_import`` in a fresh
process (reading, validating, batching within the API's limits, sending, storing one mapping
per row in an on-disk SQLite database). The Node client's ``upsertManyProfiles`` neither chunks
nor runs concurrently: it is measured as one call with every event (what the stub then receives
is recorded; the real API refuses more than 200 events per request) and as sequential calls of
50 events, the way it has to be used against the real API.

Two stubs: one answering at once over loopback (what the client code itself costs), and one
answering after ``LATENCY_MS`` (a remote API; fewer rows, the rates are per second).
Peak RSS of the import process is compared for two row counts.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, StubProcess, table, verdict, write_result

TARGET_SPEEDUP = 3.0
TARGET_MEMORY_SPREAD = 0.10
LATENCY_MS = 20.0
NODE_SCRIPT = Path(__file__).resolve().parent / "node_upsert.js"


def write_rows(path: Path, count: int) -> None:
    """``count`` JSONL rows, one customer each."""
    tiers = ("gold", "silver", "basic")
    with path.open("w", encoding="utf-8") as out:
        for n in range(count):
            row = {"id": f"customer-{n}", "traits": {
                "email": f"customer-{n}@example.com", "firstname": f"Name{n % 997}",
                "tier": tiers[n % 3], "points": n % 1000}}
            out.write(json.dumps(row, separators=(",", ":")) + "\n")


def _ours(path: Path, url: str, workers: int, *extra: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.import_child", str(path), url, str(workers), *extra],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if output.returncode != 0:
        raise RuntimeError(f"import failed: {output.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def _node(path: Path, url: str, mode: str) -> dict[str, Any] | None:
    node = shutil.which("node")
    if node is None or not (ROOT / "node_modules/@ninetailed/experience.js-shared").exists():
        return None
    output = subprocess.run(
        [node, "--max-old-space-size=8192", str(NODE_SCRIPT), str(path), url, mode],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )
    if output.returncode != 0:
        return {"error": output.stderr[-2000:]}
    result: dict[str, Any] = json.loads(output.stdout.strip().splitlines()[-1])
    return result


def _scenario(
    path: Path, rows: int, workers_list: list[int], delay_ms: float, node_modes: list[str]
) -> dict[str, Any]:
    """Every client against one stub; rates in profiles per second."""
    runs: dict[str, dict[str, Any]] = {}
    with StubProcess("batch", delay_ms=delay_ms) as stub:
        for workers in workers_list:
            stub.reset()
            runs[f"ours --workers {workers}"] = _ours(path, stub.url, workers)
            runs[f"ours --workers {workers}"]["stub"] = stub.stats()
        stub.reset()
        label = f"ours --async --workers {max(workers_list)}"
        runs[label] = _ours(path, stub.url, max(workers_list), "--async")
        runs[label]["stub"] = stub.stats()
        for mode in node_modes:
            stub.reset()
            answer = _node(path, stub.url, mode)
            if answer is not None:
                answer["stub"] = stub.stats()
                runs[f"node {mode}"] = answer
    for data in runs.values():
        if "elapsed_s" in data:
            data["profiles_per_s"] = rows / data["elapsed_s"]
    return runs


def _print(title: str, runs: dict[str, dict[str, Any]]) -> dict[str, float]:
    table_rows: list[list[object]] = []
    for label, data in runs.items():
        stub = data.get("stub", {})
        if "error" in data:
            table_rows.append([label, "failed", "", "", data["error"].strip()[-60:]])
            continue
        if label.startswith("node single"):
            note = f"one body of {stub['max_body_bytes'] / 1e6:.1f} MB"
        elif label.startswith("node"):
            note = "sequential calls of 50"
        elif "--async" in label:
            note = "import endpoint: no answers, no mappings"
        else:
            note = f"{data['mappings']:,} mappings stored"
        table_rows.append([label, f"{data['profiles_per_s']:,.0f}", stub.get("requests", ""),
                           stub.get("max_events_per_request", ""), note])
    print(table(title, ["client", "profiles/s", "requests", "max events/request", "note"],
                table_rows))
    best = max(d["profiles_per_s"] for k, d in runs.items()
               if k.startswith("ours --workers") and "profiles_per_s" in d)
    speedups = {k.removeprefix("node "): best / d["profiles_per_s"]
                for k, d in runs.items() if k.startswith("node") and "profiles_per_s" in d}
    for mode, speedup in speedups.items():
        print(f"  best of ours (sync, mappings stored) vs Node {mode}: {speedup:.1f}x "
              f"(target >= {TARGET_SPEEDUP:g}x: {verdict(speedup >= TARGET_SPEEDUP)})")
    return speedups


def run(options: argparse.Namespace) -> dict[str, Any]:
    rows = options.rows or (10_000 if options.quick else 100_000)
    big_rows = options.big_rows or (100_000 if options.quick else 1_000_000)
    latency_rows = max(500, rows // 10)
    workers_list = [int(w) for w in str(options.workers).split(",") if w.strip()]
    node_modes = [] if options.no_node else ["chunked", "single"]
    workdir = Path(tempfile.mkdtemp(prefix="experience-bench-import-"))
    try:
        small, few, big = workdir / "rows.jsonl", workdir / "few.jsonl", workdir / "big.jsonl"
        write_rows(small, rows)
        write_rows(few, latency_rows)
        loopback = _scenario(small, rows, workers_list, 0.0, node_modes)
        remote = _scenario(few, latency_rows, workers_list, LATENCY_MS, node_modes)
        write_rows(big, big_rows)
        memory_workers = max(workers_list)
        with StubProcess("batch") as stub:
            big_run = _ours(big, stub.url, memory_workers)
            big_run["stub"] = stub.stats()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    speedups = _print(f"Bulk import of {rows:,} profiles, stub answering at once", loopback)
    remote_speedups = _print(
        f"Bulk import of {latency_rows:,} profiles, stub answering after {LATENCY_MS:g} ms",
        remote)
    small_peak = loopback[f"ours --workers {memory_workers}"]["peak_rss_kib"]
    big_peak = big_run["peak_rss_kib"]
    spread = abs(big_peak - small_peak) / small_peak
    print(f"peak RSS, --workers {memory_workers}: {rows:,} rows {small_peak / 1024:.1f} MiB, "
          f"{big_rows:,} rows {big_peak / 1024:.1f} MiB: {spread:.1%} apart "
          f"(target < {TARGET_MEMORY_SPREAD:.0%}: {verdict(spread < TARGET_MEMORY_SPREAD)}); "
          f"{big_rows / big_run['elapsed_s']:,.0f} profiles/s, "
          f"{big_run['stub']['events']:,} events received")
    result = {
        "rows": rows,
        "big_rows": big_rows,
        "latency_rows": latency_rows,
        "latency_ms": LATENCY_MS,
        "loopback": loopback,
        "remote": remote,
        "speedup_vs_node": speedups,
        "speedup_vs_node_remote": remote_speedups,
        "memory": {"workers": memory_workers, "rows_peak_rss_kib": small_peak,
                   "big_rows_peak_rss_kib": big_peak, "spread": spread, "big_run": big_run},
        "targets": {"speedup_min": TARGET_SPEEDUP, "memory_spread_max": TARGET_MEMORY_SPREAD},
        "met": bool(speedups) and min(speedups.values()) >= TARGET_SPEEDUP
        and spread < TARGET_MEMORY_SPREAD,
    }
    print(f"-> {write_result('import', result)}")
    return result
