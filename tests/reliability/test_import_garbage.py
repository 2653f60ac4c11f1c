"""Import files with garbage lines: every valid row is still sent, exactly once."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from django_experience.emulator.handle import EmulatorHandle
from django_experience.models import ProfileMapping

pytestmark = pytest.mark.django_db

# Anything on one line that is not a JSON object: binary noise, broken JSON, wrong shapes.
garbage = st.one_of(
    st.binary(max_size=120).map(lambda b: b.replace(b"\n", b" ")),
    st.sampled_from([b"{not json", b"[1, 2]", b'"id"', b"null", b'{"traits": {"a": 1}}',
                     b'{"id": "x", "traits": [1]}', b'{"id": ""}', b'{"id": {"a": 1}}',
                     b"\xff\xfe\x00garbage", b'{"id": "broken', b"\x00" * 50,
                     b'{"id": "' + b"z" * 400 + b'"}']),
).filter(lambda line: not line.strip().startswith(b"{\"id\": \"row-"))


def _is_a_row(line: bytes, *, first: bool) -> bool:
    """Whether the reader sees a row here: blank lines are skipped, and so is the byte order
    mark that may open a file (an encoding mark, not data)."""
    text = line.decode("utf-8", "replace")
    if first:
        text = text.removeprefix("\ufeff")
    return bool(text.strip())


def _import(path: Path, workers: int) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("experience_import", file=str(path), workers=workers, batch_size=7,
                     backoff=0.0, progress_interval=3600, checkpoint=str(path) + ".ckpt",
                     stdout=out, stderr=err)
    except CommandError as exc:
        return int(exc.returncode), out.getvalue() + err.getvalue()
    return 0, out.getvalue() + err.getvalue()


@settings(max_examples=10, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    layout=st.lists(st.one_of(st.just(None), garbage), min_size=1, max_size=40),
    workers=st.sampled_from([1, 3]),
    crlf=st.booleans(),
)
@example(layout=[b"\xef\xbb\xbf"], workers=1, crlf=False)  # a file of just a byte order mark
@example(layout=[None, b"\xef\xbb\xbf"], workers=1, crlf=False)  # one inside: garbage
def test_garbage_lines_never_stop_valid_rows(
    emulator: EmulatorHandle, tmp_path_factory: pytest.TempPathFactory,
    layout: list[bytes | None], workers: int, crlf: bool,
) -> None:
    ProfileMapping.objects.all().delete()
    emulator.reset()
    path = tmp_path_factory.mktemp("import") / "people.jsonl"
    valid: dict[str, dict[str, Any]] = {}
    lines = []
    for n, entry in enumerate(layout):
        if entry is None:
            traits = {"email": f"row{n}@example.com", "n": n}
            valid[f"row-{n}"] = traits
            lines.append(json.dumps({"id": f"row-{n}", "traits": traits}).encode())
        else:
            lines.append(entry)
    path.write_bytes((b"\r\n" if crlf else b"\n").join(lines) + b"\n")

    code, output = _import(path, workers)

    mapped = dict(ProfileMapping.objects.values_list("external_id", "profile_id"))
    assert set(mapped) == set(valid), output
    for external_id, traits in valid.items():
        stored = emulator.profile(mapped[external_id])
        assert stored is not None and stored["traits"] == traits
    assert emulator.stats()["events"] == len(valid)  # each valid row sent once
    expect_rejections = any(
        entry is not None and _is_a_row(entry, first=index == 0)
        for index, entry in enumerate(layout)
    )
    assert code == (1 if expect_rejections else 0), output
