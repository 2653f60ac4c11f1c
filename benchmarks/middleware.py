"""Middleware overhead: a personalized page with and without the middleware, side by side.

The API is a stub in its own process answering pre-built bytes over kept-alive loopback
connections. The overhead is ``(with - without) / bare``, where *bare* is one ``http.client``
round trip of the very request the middleware sent, to the same stub, on a kept-alive
connection: how many round trips' worth of time the whole middleware path costs.

The bare round trip is measured twice. Back to back in a tight loop (the stub answers at once,
everything is hot in the caches), and inside a request: the page without the middleware whose
view also makes one bare round trip, minus the page without the middleware. The second is the
round trip as any request path meets it: between two requests the stub has gone idle and has to
be woken, and Django's own work has cooled the caches. Both ratios are reported; on this kind
of machine the tight loop's round trip is about half of the in-request one.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import time
from collections.abc import Callable
from typing import Any

from benchmarks.common import StubProcess, median, setup_django, table, verdict, write_result

TARGET_RATIO = 2.0
TARGET_EXCLUDED_US = 50.0


def _per_request(action: Callable[[], object], count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        action()
    return (time.perf_counter() - started) / count


class BareRoundTrip:
    """Replays one recorded request on a kept-alive ``http.client`` connection."""

    def __init__(self, port: int, recorded: dict[str, Any]) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port)
        self.method = recorded["method"]
        self.target = recorded["target"]
        self.body = recorded["body"].encode("utf-8")
        self.headers: dict[str, str] = {}
        for line in recorded["head"].split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.lower() not in ("host", "content-length"):
                self.headers[name] = value.strip()

    def __call__(self) -> bytes:
        self.connection.request(self.method, self.target, body=self.body, headers=self.headers)
        return self.connection.getresponse().read()


def _spread(ratios: list[float]) -> str:
    """The middle half of the rounds' ratios (``1.80-2.10``): the medians' noise."""
    if len(ratios) < 4:
        return f"{min(ratios):.2f}-{max(ratios):.2f}"
    low, _, high = statistics.quantiles(ratios, n=4)
    return f"{low:.2f}-{high:.2f} (middle half)"


def run(options: argparse.Namespace) -> dict[str, Any]:
    quick = options.quick
    rounds = 5 if quick else 15
    per_round = 100 if quick else 300
    excluded_per_round = 1000 if quick else 3000
    with StubProcess("page") as stub:
        setup_django(EXPERIENCE_API_URL=stub.url)
        from django.test import Client, override_settings

        from benchmarks.settings import WITHOUT_EXPERIENCE
        from django_experience import delivery

        with_client, without_client = Client(), Client()
        with override_settings(MIDDLEWARE=WITHOUT_EXPERIENCE):
            assert without_client.get("/page/").status_code == 200  # builds its chain
        first = with_client.get("/page/")
        assert first.status_code == 200
        assert "Welcome back, gold member" in first.content.decode(), "page not personalized"
        assert with_client.get("/page/").status_code == 200  # now with the cookie: updates
        bare = BareRoundTrip(stub.port, stub.last_request())

        def page_with() -> None:
            with_client.get("/page/")

        def page_without() -> None:
            without_client.get("/page/")

        from benchmarks import views

        views.round_trip = bare

        def page_round_trip_without() -> None:
            without_client.get("/page-with-round-trip/")

        def excluded_with() -> None:
            with_client.get("/static/app.css")

        def excluded_without() -> None:
            without_client.get("/static/app.css")

        for warm_up in (page_with, page_without, bare, page_round_trip_without):
            _per_request(warm_up, per_round)
        delivery.flush(10)
        stub.reset()
        samples: dict[str, list[float]] = {
            "with": [], "without": [], "bare": [], "without_plus_bare": []
        }
        for n in range(rounds):
            order: list[tuple[str, Callable[[], object]]] = [
                ("with", page_with), ("without", page_without), ("bare", bare),
                ("without_plus_bare", page_round_trip_without),
            ]
            for name, action in order[n % 4:] + order[: n % 4]:  # rotate who goes first
                samples[name].append(_per_request(action, per_round))
        delivery.flush(10)
        stats = stub.stats()
        # The bare round trips replay a profile update too: one per measured request, in the
        # tight loop and inside the requests without the middleware.
        replayed = 2 * rounds * per_round
        calls_per_page = (stats["by_kind"].get("profile", 0) - replayed) / (rounds * per_round)

        # Same pages with component view tracking off: what a site gets by default (no
        # experience listed in EXPERIENCE_STICKY_EXPERIENCES), or where the browser SDK tracks.
        off: dict[str, list[float]] = {"with": [], "without": []}
        with override_settings(EXPERIENCE_TRACK_COMPONENT_VIEWS=False):
            for _ in range(max(3, rounds // 3)):
                off["with"].append(_per_request(page_with, per_round))
                off["without"].append(_per_request(page_without, per_round))

        excluded: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(rounds):
            excluded["with"].append(_per_request(excluded_with, excluded_per_round))
            excluded["without"].append(_per_request(excluded_without, excluded_per_round))

        # A page that never looks at personalization, in preflight mode: no API call at all.
        delivery.flush(10)
        stub.reset()
        with override_settings(EXPERIENCE_MODE="preflight"):
            for _ in range(50):
                assert Client().get("/plain/").status_code == 200  # new visitors
                assert with_client.get("/plain/").status_code == 200  # a returning one
            delivery.flush(10)
        preflight_calls = stub.stats()["requests"]
        stub.reset()
        for _ in range(50):
            with_client.get("/plain/")
        delivery.flush(10)
        update_stats = stub.stats()

    with_s, without_s, bare_s = (median(samples[k]) for k in ("with", "without", "bare"))
    # Each round's own ratios: how far one round can stray from the medians on this machine.
    round_ratios = [
        ((w - wo) / bare, (w - wo) / (wob - wo))
        for w, wo, bare, wob in zip(
            samples["with"], samples["without"], samples["bare"], samples["without_plus_bare"],
            strict=True,
        )
    ]
    tight_spread = _spread([tight for tight, _ in round_ratios])
    in_request_spread = _spread([inside for _, inside in round_ratios])
    in_request_bare_s = median(samples["without_plus_bare"]) - without_s
    ratio = (with_s - without_s) / bare_s
    ratio_in_request = (with_s - without_s) / in_request_bare_s
    ratio_off = (median(off["with"]) - median(off["without"])) / bare_s
    excluded_us = (median(excluded["with"]) - median(excluded["without"])) * 1e6
    rows = [
        ["page without middleware", f"{without_s * 1e6:,.0f} us", ""],
        ["page with middleware", f"{with_s * 1e6:,.0f} us", f"{calls_per_page:.2f} API call/page"],
        ["bare http.client round trip, tight loop", f"{bare_s * 1e6:,.0f} us", ""],
        ["bare round trip inside a request", f"{in_request_bare_s * 1e6:,.0f} us",
         "(page without + round trip) - page without"],
        ["(with - without) / bare, tight loop", f"{ratio:.2f}",
         f"target <= {TARGET_RATIO}: {verdict(ratio <= TARGET_RATIO)}; rounds {tight_spread}"],
        ["(with - without) / bare inside a request", f"{ratio_in_request:.2f}",
         f"target <= {TARGET_RATIO}: {verdict(ratio_in_request <= TARGET_RATIO)}; "
         f"rounds {in_request_spread}"],
        ["  same, component views off", f"{ratio_off:.2f}",
         "as by default, with no experience listed sticky"],
        ["excluded path overhead", f"{excluded_us:.1f} us",
         f"target <= {TARGET_EXCLUDED_US:g} us: {verdict(excluded_us <= TARGET_EXCLUDED_US)}"],
        ["unused page, preflight: API calls", str(preflight_calls),
         f"target 0: {verdict(preflight_calls == 0)}"],
        ["unused page, update: batch requests", str(update_stats["requests"]),
         f"{update_stats['events']} page events for 50 views (background delivery)"],
    ]
    title = "Middleware overhead (medians of interleaved rounds)"
    print(table(title, ["measure", "value", "note"], rows))
    result = {
        "rounds": rounds,
        "requests_per_round": per_round,
        "seconds_per_request": {
            "with": with_s, "without": without_s, "bare": bare_s,
            "bare_inside_a_request": in_request_bare_s,
        },
        "samples": samples,
        "per_round_ratios": {
            "tight_loop": [tight for tight, _ in round_ratios],
            "inside_a_request": [inside for _, inside in round_ratios],
        },
        "ratio": ratio,
        "ratio_bare_inside_a_request": ratio_in_request,
        "ratio_component_views_off": ratio_off,
        "api_calls_per_personalized_page": calls_per_page,
        "excluded_path_overhead_us": excluded_us,
        "preflight_unused_page_api_calls": preflight_calls,
        "update_unused_page_batch_requests": update_stats["requests"],
        "targets": {
            "ratio_max": TARGET_RATIO,
            "excluded_overhead_us_max": TARGET_EXCLUDED_US,
            "preflight_unused_calls": 0,
        },
        "met": ratio <= TARGET_RATIO
        and excluded_us <= TARGET_EXCLUDED_US
        and preflight_calls == 0,
    }
    path = write_result("middleware", result)
    print(f"-> {path}")
    return result
