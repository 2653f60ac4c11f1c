"""Outage: added latency of a personalized page while the API is black-holed or refusing.

Added latency = a page's time minus the median time of the same page without the middleware.
Phase "breaker closed": the breaker threshold is set out of reach, so every request pays the
failure (the budget ``EXPERIENCE_TIMEOUT`` is the bound). Phase "breaker open": the default
threshold; once it opened, requests must not wait for the API at all.
"""

from __future__ import annotations

import argparse
import socket
import time
from typing import Any

from benchmarks.common import (
    StubProcess,
    median,
    percentile,
    setup_django,
    table,
    verdict,
    write_result,
)

BUDGET = 0.2  # EXPERIENCE_TIMEOUT of this benchmark, seconds
OPEN_TARGET = 0.001


def _refusing_url() -> str:
    """A loopback port nobody listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _timed(action: Any, count: int) -> list[float]:
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        action()
        samples.append(time.perf_counter() - started)
    return samples


def _scenario(url: str, closed_count: int, open_count: int) -> dict[str, Any]:
    from django.test import Client, override_settings

    from benchmarks.settings import WITHOUT_EXPERIENCE
    from django_experience import delivery
    from django_experience.breaker import OPEN, breaker

    without = Client()
    with override_settings(MIDDLEWARE=WITHOUT_EXPERIENCE):
        without.get("/page/")
    baseline = median(_timed(lambda: without.get("/page/"), 200))
    client = Client()
    client.cookies["ntaid"] = "bench-returning-visitor"

    def page() -> None:
        response = client.get("/page/")
        assert response.status_code == 200 and b"<h1>Welcome</h1>" in response.content

    with override_settings(EXPERIENCE_API_URL=url, EXPERIENCE_TIMEOUT=BUDGET):
        breaker.reset()
        with override_settings(EXPERIENCE_BREAKER_THRESHOLD=10**9):
            closed = [t - baseline for t in _timed(page, closed_count)]
        breaker.reset()
        tripping = 0
        while breaker.state != OPEN and tripping < 100:
            page()
            tripping += 1
        opened = [t - baseline for t in _timed(page, open_count)]
        breaker.reset()
    delivery.reset()  # page views queued for a dead API are not this benchmark's concern
    return {
        "baseline_page_s": baseline,
        "closed": {"p50": percentile(closed, 0.5), "p99": percentile(closed, 0.99),
                   "max": max(closed), "n": len(closed)},
        "requests_until_open": tripping,
        "open": {"p50": percentile(opened, 0.5), "p99": percentile(opened, 0.99),
                 "max": max(opened), "n": len(opened)},
    }


def run(options: argparse.Namespace) -> dict[str, Any]:
    closed_count = 25 if options.quick else 100
    open_count = 300 if options.quick else 2000
    setup_django()
    results: dict[str, Any] = {}
    with StubProcess("blackhole") as hole:
        results["black-holed"] = _scenario(hole.url, closed_count, open_count)
    results["refusing"] = _scenario(_refusing_url(), closed_count, open_count)
    limit = BUDGET * 1.1
    rows = []
    met = True
    for name, data in results.items():
        closed_ok = data["closed"]["p99"] <= limit
        open_ok = data["open"]["p99"] <= OPEN_TARGET
        met = met and closed_ok and open_ok
        rows.append([name, "breaker closed", f"{data['closed']['p50'] * 1e3:.1f} ms",
                     f"{data['closed']['p99'] * 1e3:.1f} ms",
                     f"<= {limit * 1e3:.0f} ms: {verdict(closed_ok)}"])
        rows.append([name, f"breaker open (after {data['requests_until_open']})",
                     f"{data['open']['p50'] * 1e3:.3f} ms", f"{data['open']['p99'] * 1e3:.3f} ms",
                     f"<= 1 ms: {verdict(open_ok)}"])
    print(table(f"Outage: added latency, EXPERIENCE_TIMEOUT={BUDGET:g}s",
                ["API", "phase", "p50", "p99", "target"], rows))
    result = {"budget_s": BUDGET, "scenarios": results, "met": met,
              "targets": {"closed_p99_max_s": limit, "open_p99_max_s": OPEN_TARGET}}
    print(f"-> {write_result('outage', result)}")
    return result
