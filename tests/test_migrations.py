"""The migrations match the models (a model change without its migration fails here)."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_no_model_change_lacks_a_migration() -> None:
    out = io.StringIO()
    try:
        call_command(
            "makemigrations", "django_experience", check=True, dry_run=True, stdout=out
        )
    except SystemExit as exc:  # --check exits 1 when a migration is missing
        pytest.fail(f"makemigrations --check found changes:\n{out.getvalue()} ({exc})")


def _identifier_collations() -> set[str | None]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT DISTINCT collation_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name = %s"
            " AND column_name IN ('profile_id', 'external_id', 'organization_id', 'environment')",
            ["django_experience_profilemapping"],
        )
        return {collation for (collation,) in cursor}


@pytest.mark.django_db(transaction=True)
def test_the_exact_identifiers_migration_runs_both_ways_and_keeps_the_rows() -> None:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor
    from django.test.utils import CaptureQueriesContext

    from django_experience.fields import exact_collation
    from django_experience.models import ProfileMapping

    ProfileMapping.objects.create(
        profile_id="p-1", external_id="Alice ", organization_id="org", environment="main"
    )
    app = "django_experience"
    MigrationExecutor(connection).migrate([(app, "0003_profile_id_validator")])
    before = _identifier_collations() if connection.vendor == "mysql" else None
    with CaptureQueriesContext(connection) as queries:
        MigrationExecutor(connection).migrate([(app, "0004_exact_identifiers")])

    rows = ProfileMapping.objects.values_list("profile_id", "external_id")
    assert list(rows) == [("p-1", "Alice ")]
    statements = [query["sql"].lstrip().upper() for query in queries]
    altered = [sql for sql in statements if sql.startswith(("ALTER", "CREATE"))]
    if connection.vendor == "mysql":
        assert before is not None and exact_collation(connection) not in before
        assert _identifier_collations() == {exact_collation(connection)}
        assert len(altered) == 2  # one statement per table
    else:
        assert altered == []  # these compare exactly already: no table rebuilt
