"""ISO 8601 date-times are read the same way on every supported Python (3.10 included)."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
from pathlib import Path

import pytest

from django_experience.destinations import values
from django_experience.destinations.releva import prepare_profile
from django_experience.destinations.values import parse_datetime

UTC = dt.timezone.utc
PYTHON_310 = Path(os.environ.get("PYTHON_3_10", "/root/.pyenv/versions/3.10.13/bin/python"))
VALUES_FILE = Path(values.__file__)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The Releva document's own example.
        ("2019-08-18T05:48:42.419Z", dt.datetime(2019, 8, 18, 5, 48, 42, 419000, UTC)),
        ("2026-04-21T15:30:00Z", dt.datetime(2026, 4, 21, 15, 30, tzinfo=UTC)),
        ("2026-04-21T15:30:00z", dt.datetime(2026, 4, 21, 15, 30, tzinfo=UTC)),
        ("2026-04-21T15:30Z", dt.datetime(2026, 4, 21, 15, 30, tzinfo=UTC)),
        ("2026-04-21T15:30:00+02:00",
         dt.datetime(2026, 4, 21, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("2026-04-21T15:30:00+0200",
         dt.datetime(2026, 4, 21, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))),
        ("2026-04-21T15:30:00-05",
         dt.datetime(2026, 4, 21, 15, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))),
        ("2026-04-21T15:30:00.1-05:30",
         dt.datetime(2026, 4, 21, 15, 30, 0, 100000,
                     dt.timezone(-dt.timedelta(hours=5, minutes=30)))),
        ("2026-04-21T15:30:00,123456789Z", dt.datetime(2026, 4, 21, 15, 30, 0, 123456, UTC)),
        ("2026-04-21 15:30:00", dt.datetime(2026, 4, 21, 15, 30)),  # naive: no zone
        ("  2026-04-21T15:30  ", dt.datetime(2026, 4, 21, 15, 30)),
    ],
)
def test_accepted_date_times(text: str, expected: dt.datetime) -> None:
    parsed = parse_datetime(text)
    assert parsed == expected
    assert parsed is not None and parsed.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "2026-04-21", "2026-04-21T15", "2026-13-01T00:00Z", "2026-02-30T00:00Z",
        "2026-04-21T24:00Z", "2026-04-21T15:30:00+24:00", "2026-04-21T15:30:00+01:60",
        "2026-04-21T15:30:00 +01:00", "2026-04-21T15:30:00Zulu", "2026-04-21T15:30:00.Z",
        "yesterday", "",
    ],
)
def test_refused_strings(text: str) -> None:
    assert parse_datetime(text) is None


def test_releva_accepts_its_documents_example_timestamp() -> None:
    profile = prepare_profile({"email": "g@releva.ai", "registeredAt": "2019-08-18T05:48:42.419Z"})
    assert profile["registeredAt"] == "2019-08-18T05:48:42.419Z"


@pytest.mark.skipif(not PYTHON_310.exists(), reason="no Python 3.10 interpreter here")
def test_the_same_on_python_3_10() -> None:
    # values.py needs the standard library only: load the file itself in a 3.10 interpreter.
    script = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('values', {str(VALUES_FILE)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert sys.version_info[:2] == (3, 10), sys.version\n"
        "for text in ('2019-08-18T05:48:42.419Z', '2026-04-21T15:30:00+0200',\n"
        "             '2026-04-21T15:30:00.1-05:30', '2026-04-21T15:30:00,123456789Z'):\n"
        "    parsed = module.parse_datetime(text)\n"
        "    assert parsed is not None and parsed.utcoffset() is not None, text\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [str(PYTHON_310), "-I", "-c", script], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ.get("PATH", "")},
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
