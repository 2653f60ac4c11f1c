"""Bulk import: profiles per second with 1, 2, 4, 8 workers vs the official Node client.

Both feed the same stub (its own process; the batch endpoint answers one profile per
``anonymousId``) from the same JSONL file. Ours is ``manage.py experience_import`` in a fresh
process (reading, validating, batching within the API's limits, sending, storing one mapping
per row). The Node client's ``upsertManyProfiles`` neither chunks nor runs concurrently: it is
measured as one call with every event (what the stub then receives is recorded; the real API
refuses more than 200 events per request) and as sequential calls of 50 events, the way it has
to be used against the real API. Peak RSS of the import process is compared for two row counts.
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


def _ours(path: Path, url: str, workers: int) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, "-m", "benchmarks.import_child", str(path), url, str(workers)],
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


def run(options: argparse.Namespace) -> dict[str, Any]:
    rows = options.rows or (10_000 if options.quick else 100_000)
    big_rows = options.big_rows or (100_000 if options.quick else 1_000_000)
    workers_list = [int(w) for w in str(options.workers).split(",") if w.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="experience-bench-import-"))
    try:
        small = workdir / "rows.jsonl"
        write_rows(small, rows)
        ours: dict[int, dict[str, Any]] = {}
        node: dict[str, Any] = {}
        with StubProcess("batch") as stub:
            for workers in workers_list:
                stub.reset()
                ours[workers] = _ours(small, stub.url, workers)
                ours[workers]["stub"] = stub.stats()
            if not options.no_node:
                for mode in ("chunked", "single"):
                    stub.reset()
                    answer = _node(small, stub.url, mode)
                    if answer is not None:
                        answer["stub"] = stub.stats()
                        node[mode] = answer
            big = workdir / "big.jsonl"
            write_rows(big, big_rows)
            memory_workers = max(workers_list)
            stub.reset()
            big_run = _ours(big, stub.url, memory_workers)
            big_run["stub"] = stub.stats()
            small_memory = ours.get(memory_workers) or _ours(small, stub.url, memory_workers)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    table_rows: list[list[object]] = []
    for workers, data in ours.items():
        rate = rows / data["elapsed_s"]
        data["profiles_per_s"] = rate
        stub_stats = data["stub"]
        table_rows.append([f"experience_import --workers {workers}", f"{rate:,.0f}",
                           stub_stats["requests"], stub_stats["max_events_per_request"],
                           f"{data['mappings']:,} mappings"])
    for mode, data in node.items():
        if "error" in data:
            table_rows.append([f"Node upsertManyProfiles ({mode})", "failed", "", "",
                               data["error"].strip().splitlines()[-1][:60]])
            continue
        data["profiles_per_s"] = rows / data["elapsed_s"]
        stub_stats = data["stub"]
        note = (f"one body of {stub_stats['max_body_bytes'] / 1e6:.0f} MB"
                if mode == "single" else "sequential, 50 per call")
        table_rows.append([f"Node upsertManyProfiles ({mode})", f"{data['profiles_per_s']:,.0f}",
                           stub_stats["requests"], stub_stats["max_events_per_request"], note])
    best = max(data["profiles_per_s"] for data in ours.values())
    node_rates = {mode: d["profiles_per_s"] for mode, d in node.items() if "profiles_per_s" in d}
    speedups = {mode: best / rate for mode, rate in node_rates.items()}
    print(table(f"Bulk import of {rows:,} profiles (JSONL) into the stub",
                ["client", "profiles/s", "requests", "max events/request", "note"], table_rows))
    for mode, speedup in speedups.items():
        print(f"best of ours vs Node ({mode}): {speedup:.1f}x  "
              f"(target >= {TARGET_SPEEDUP:g}x: {verdict(speedup >= TARGET_SPEEDUP)})")
    small_peak, big_peak = small_memory["peak_rss_kib"], big_run["peak_rss_kib"]
    spread = abs(big_peak - small_peak) / small_peak
    print(f"peak RSS, --workers {memory_workers}: {rows:,} rows {small_peak / 1024:.1f} MiB, "
          f"{big_rows:,} rows {big_peak / 1024:.1f} MiB: {spread:.1%} apart "
          f"(target < {TARGET_MEMORY_SPREAD:.0%}: {verdict(spread < TARGET_MEMORY_SPREAD)}); "
          f"large run {big_rows / big_run['elapsed_s']:,.0f} profiles/s")
    result = {
        "rows": rows,
        "big_rows": big_rows,
        "ours": {str(k): v for k, v in ours.items()},
        "node": node,
        "speedup_vs_node": speedups,
        "memory": {"workers": memory_workers, "rows_peak_rss_kib": small_peak,
                   "big_rows_peak_rss_kib": big_peak, "spread": spread,
                   "big_run": big_run},
        "targets": {"speedup_min": TARGET_SPEEDUP, "memory_spread_max": TARGET_MEMORY_SPREAD},
        "met": bool(speedups) and min(speedups.values()) >= TARGET_SPEEDUP
        and spread < TARGET_MEMORY_SPREAD,
    }
    print(f"-> {write_result('import', result)}")
    return result


