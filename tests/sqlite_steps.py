"""Count what SQLite does, to test that a query uses an index rather than its cost in time."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def sqlite_steps() -> Iterator[list[int]]:
    """``[n]``: the SQLite virtual machine's steps run within the block, in units of 10.

    A query that searches N rows takes steps in proportion to N, one that finds its rows
    through an index does not; machine speed does not enter into it.
    """
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("counts SQLite's own steps")
    connection.ensure_connection()
    steps = [0]

    def step() -> int:
        steps[0] += 1
        return 0  # go on

    connection.connection.set_progress_handler(step, 10)
    try:
        yield steps
    finally:
        connection.connection.set_progress_handler(None, 10)


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
