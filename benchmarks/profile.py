"""Profile the middleware path with pyinstrument (``pip install pyinstrument``).

Renders the personalized benchmark page many times against the stub and writes the profile as
text and HTML under ``benchmarks/results/``. Not part of the default run.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks.common import RESULTS, StubProcess, setup_django


def run(options: argparse.Namespace) -> dict[str, Any]:
    try:
        from pyinstrument import Profiler
    except ImportError:
        print("pyinstrument is not installed: pip install pyinstrument")
        return {}
    count = 300 if options.quick else 2000
    with StubProcess("page") as stub:
        setup_django(EXPERIENCE_API_URL=stub.url)
        from django.test import Client

        client = Client()
        for _ in range(50):
            client.get("/page/")
        profiler = Profiler(interval=0.0001)
        profiler.start()
        for _ in range(count):
            client.get("/page/")
        profiler.stop()
        from django_experience import delivery

        delivery.flush(10)
    RESULTS.mkdir(exist_ok=True)
    text = profiler.output_text(unicode=True, color=False, show_all=False)
    (RESULTS / "profile-middleware.txt").write_text(text, encoding="utf-8")
    (RESULTS / "profile-middleware.html").write_text(profiler.output_html(), encoding="utf-8")
    print(text)
    print(f"-> {RESULTS / 'profile-middleware.txt'}")
    return {}
