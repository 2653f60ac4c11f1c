"""The import stores its mappings in the database the project's router names for them (an
inner test session: the databases are set when Django starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INNER_TESTS = """
import io

import pytest
from django.core.management import call_command

from django_experience.models import ProfileMapping


@pytest.mark.django_db(databases=["default", "experience"])
def test_the_import_writes_mappings_where_the_router_says(experience_emulator, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"id": "crm-1", "traits": {}}\\n{"id": "crm-2", "traits": {}}\\n')
    call_command("experience_import", file=str(rows), checkpoint=str(tmp_path / "ck"),
                 progress_interval=3600, stdout=io.StringIO(), stderr=io.StringIO())
    assert sorted(ProfileMapping.objects.using("experience").values_list(
        "external_id", flat=True)) == ["crm-1", "crm-2"]
"""


def test_mappings_go_to_the_database_the_router_names(pytester: pytest.Pytester) -> None:
    root = Path(__file__).resolve().parent.parent.parent
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", f"pythonpath={root}",
        "--ds=tests.two_databases.settings", "-q",
    )
    result.assert_outcomes(passed=1)
