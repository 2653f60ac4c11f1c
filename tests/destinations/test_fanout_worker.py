"""With ``EXPERIENCE_DELIVERY = "tasks"`` a task worker in another process sends the upserts:
the sinks are registered when the app starts, wherever it starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from django_experience.emulator.handle import EmulatorHandle
from tests.databases import require_django_tasks_db

ROOT = Path(__file__).resolve().parents[2]


def test_a_database_task_worker_sends_the_queued_upserts(
    experience_emulator: EmulatorHandle, subprocess_database_url: str
) -> None:
    require_django_tasks_db()
    url = experience_emulator.url
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "tests.delivery.tasks_db_settings",
        "TEST_DATABASE_URL": subprocess_database_url,
        "TEST_API_URL": url,
        "EXPERIENCE_DESTINATIONS": json.dumps({
            "experiture": {"url": url + "/experiture/public/v1", "token": "t",
                           "match_key": "email"},
            "releva": {"url": url + "/releva/api/v0", "secret_key": "k"},
        }),
    }
    django = [sys.executable, "-m", "django"]
    subprocess.run([*django, "migrate", "-v", "0"], env=env, check=True, timeout=60)
    script = textwrap.dedent(
        """
        import django
        django.setup()
        from django_experience import delivery
        from django_experience.destinations.fanout import upsert_to_destinations
        for n in range(3):
            upsert_to_destinations(f"user-{n}", {"email": f"p{n}@example.com", "n": n})
        assert delivery.flush(timeout=20)
        """
    )
    enqueued = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert enqueued.returncode == 0, enqueued.stderr
    assert experience_emulator.destinations() == {"experiture": [], "releva": []}
    worker = subprocess.run(
        [*django, "db_worker", "--batch", "--no-startup-delay", "--interval", "0.05"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert worker.returncode == 0, worker.stderr
    stored = experience_emulator.destinations()
    assert stored["experiture"] == [{"email": f"p{n}@example.com", "n": n} for n in range(3)]
    assert [profile["email"] for profile in stored["releva"]] == [
        f"p{n}@example.com" for n in range(3)
    ]
