"""``python -m benchmarks [NAME ...] [--quick]``: run the benchmarks (all when no NAME)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
import time
from pathlib import Path

BENCHMARKS = {
    "middleware": "benchmarks.middleware",
    "outage": "benchmarks.outage",
    "import": "benchmarks.bulk_import",
    "emulator": "benchmarks.emulator",
    "scale": "benchmarks.scale",
    "profile": "benchmarks.profile",
}
DEFAULT = ["middleware", "outage", "import", "emulator", "scale"]


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "names", nargs="*", metavar="NAME",
        help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: {', '.join(DEFAULT)})",
    )
    parser.add_argument("--quick", action="store_true", help="smaller counts (about a minute)")
    parser.add_argument("--rows", type=int, default=None,
                        help="import: rows of the throughput run (default 100000; quick 10000)")
    parser.add_argument("--big-rows", type=int, default=None,
                        help="import: rows of the large memory run (default 1000000; "
                        "quick 100000)")
    parser.add_argument("--workers", default="1,2,4,8", help="import: worker counts")
    parser.add_argument("--no-node", action="store_true", help="import: skip the Node client")
    parser.add_argument("--duration", type=float, default=None,
                        help="emulator: seconds per measurement (default 5; quick 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse(argv)
    names = options.names or DEFAULT
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}")
        return 2
    failed = []
    for name in names:
        print(f"\n=== {name} ===", flush=True)
        started = time.perf_counter()
        module = importlib.import_module(BENCHMARKS[name])
        result = module.run(options)
        print(f"({name}: {time.perf_counter() - started:.0f}s)", flush=True)
        if isinstance(result, dict) and result.get("met") is False:
            failed.append(name)
    _remove_database()
    if failed:
        print(f"\nTargets missed: {', '.join(failed)}")
    return 0


def _remove_database() -> None:
    from django.conf import settings

    if settings.configured:
        with contextlib.suppress(OSError, KeyError):
            Path(str(settings.DATABASES["default"]["NAME"])).unlink()


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    sys.exit(main())
