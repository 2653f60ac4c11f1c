"""Count the work a database does for a query, to test that it uses an index rather than its
cost in time (machine speed does not enter into it)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

# Rows this transaction's scans have read so far, of every table (sequential scans) and index
# (index scans) of the schema: the function behind seq_tup_read and idx_tup_read, for both.
_POSTGRES_ROWS_READ = """
    SELECT COALESCE(SUM(pg_stat_get_xact_tuples_returned(c.oid)), 0)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i')
"""


@contextmanager
def query_work() -> Iterator[list[int]]:
    """``[n]``: the work the database did within the block.

    On SQLite, its virtual machine's steps, in units of 10; on PostgreSQL, the rows its scans
    read (of tables and of indexes, from the transaction's own statistics); on MySQL and
    MariaDB, the rows the session's storage-engine handlers read. A query that searches N rows
    costs in proportion to N either way, one that finds its rows through an index does not.
    Other databases skip the test.
    """
    from django.db import connection

    connection.ensure_connection()
    if connection.vendor == "sqlite":
        with _sqlite_steps() as work:
            yield work
    elif connection.vendor == "postgresql":
        with _postgres_rows_read() as work:
            yield work
    elif connection.vendor == "mysql":
        with _mysql_rows_read() as work:
            yield work
    else:
        pytest.skip(f"counts the work of SQLite, PostgreSQL or MySQL, not of {connection.vendor}")


@contextmanager
def _sqlite_steps() -> Iterator[list[int]]:
    from django.db import connection

    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    connection.connection.set_progress_handler(step, 10)
    try:
        yield steps
    finally:
        connection.connection.set_progress_handler(None, 10)


@contextmanager
def _postgres_rows_read() -> Iterator[list[int]]:
    from django.db import connection

    if not connection.in_atomic_block:
        pytest.fail("query_work() on PostgreSQL needs a transaction (its statistics are its own)")

    def rows_read() -> int:
        with connection.cursor() as cursor:
            cursor.execute(_POSTGRES_ROWS_READ)
            (count,) = cursor.fetchone()
        return int(count)

    work = [0]
    before = rows_read()
    yield work
    work[0] = rows_read() - before


@contextmanager
def _mysql_rows_read() -> Iterator[list[int]]:
    from django.db import connection

    def rows_read() -> int:
        # Handler_read_key, _next, _rnd_next, ...: the rows read by key, by index order and by
        # table scan. Reading them adds the same few each time, which the difference cancels.
        with connection.cursor() as cursor:
            cursor.execute("SHOW SESSION STATUS LIKE 'Handler_read%%'")
            return sum(int(value) for _name, value in cursor.fetchall())

    work = [0]
    before = rows_read()
    yield work
    work[0] = rows_read() - before


def grew_with(added: int, few: int, many: int) -> bool:
    """Whether the work went from ``few`` to ``many`` because ``added`` rows were added: by a
    tenth of a unit per row or more. A search of those rows costs more than that on both
    databases (a few steps, one row read, per row); a lookup through an index costs the same
    give or take a plan's few units."""
    return many - few >= added / 10


def add_other_mappings(count: int, organization_id: str, environment: str = "main") -> None:
    """``count`` mappings of other people in the namespace, for a query not to look at."""
    from django_experience.models import ProfileMapping

    start = ProfileMapping.objects.count()
    ProfileMapping.objects.bulk_create(
        ProfileMapping(
            profile_id=f"p-other-{n}",
            external_id=f"other-{n}",
            organization_id=organization_id,
            environment=environment,
        )
        for n in range(start, start + count)
    )
    from django.db import connection

    if connection.vendor == "postgresql":
        # The statistics autovacuum gathers after a bulk insert: without any, the planner
        # guesses, and can take an index by its namespace columns alone. (MySQL's ANALYZE
        # TABLE would commit the test's transaction; its optimizer asks the index instead.)
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {connection.ops.quote_name(ProfileMapping._meta.db_table)}")
