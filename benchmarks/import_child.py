"""One bulk import in a fresh process, for ``benchmarks.bulk_import`` (prints a JSON line).

``python -m benchmarks.import_child FILE API_URL WORKERS [--async]``: runs ``manage.py
experience_import --file FILE --workers WORKERS`` against ``API_URL`` with a fresh database
(``--async``: the asynchronous import endpoint, no mappings stored), and reports the rows
per second of the import itself (start-up and migrations excluded) and the process's peak RSS.
"""

from __future__ import annotations

import io
import json
import sys
import time
from pathlib import Path


def main() -> None:
    path, url, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
    asynchronous = "--async" in sys.argv[4:]
    from benchmarks.common import peak_rss_kib, setup_django

    setup_django(EXPERIENCE_API_URL=url)
    from django.conf import settings
    from django.core.management import call_command

    checkpoint = Path(str(settings.DATABASES["default"]["NAME"]) + ".checkpoint")
    stdout, stderr = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    call_command(
        "experience_import",
        file=path,
        workers=workers,
        asynchronous=asynchronous,
        checkpoint=str(checkpoint),
        progress_interval=3600,
        stdout=stdout,
        stderr=stderr,
    )
    elapsed = time.perf_counter() - started
    from django_experience.models import ProfileMapping

    mappings = ProfileMapping.objects.count()
    Path(str(settings.DATABASES["default"]["NAME"])).unlink()
    checkpoint.unlink(missing_ok=True)
    peak_kib = peak_rss_kib()
    print(
        json.dumps(
            {
                "elapsed_s": elapsed,
                "mappings": mappings,
                "peak_rss_kib": peak_kib,
                "summary": stdout.getvalue().strip().splitlines(),
            }
        )
    )


if __name__ == "__main__":
    main()
