"""Insert an import batch's new ``ProfileMapping`` rows in one statement, no model per row.

``bulk_create`` builds a model instance per row and prepares each of its eight fields through
the ORM's layers: in an import that is most of the time a row costs, more than reading,
validating and sending it. Within a batch only three values differ from row to row (profile id,
external id, user); the namespace and the timestamps are the batch's. So every field prepares
its value once per batch, or per row for those three, with the field's own
``get_db_prep_save``, and the statement is the backend's own bulk insert SQL: what each
backend gets is what ``bulk_create`` would have given it.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from django.db import connections
from django.db.models import Field

from django_experience.models import ProfileMapping

NewMapping = tuple[str, str, Any]
"""``(profile id, external id, user primary key or None)``."""

# The columns whose values each row brings; every other field's value is the batch's.
_PER_ROW = ("profile_id", "external_id", "user_id")


def insert_new_mappings(
    rows: Sequence[NewMapping],
    *,
    namespace: Mapping[str, str],
    now: datetime.datetime,
    using: str,
) -> None:
    """Insert one mapping per row into database ``using``; none of them may exist yet.

    A clash with an existing mapping raises ``IntegrityError``. Call it inside
    ``transaction.atomic(using=using)``, so that then nothing of the batch is inserted.
    """
    if not rows:
        return
    connection = connections[using]
    fields = _fields()
    # The batch's values, each prepared by its field once; the row's own fill their slots.
    template = ProfileMapping(**namespace, last_seen_at=now, created_at=now, updated_at=now)
    shared = [
        None if field.attname in _PER_ROW
        else field.get_db_prep_save(getattr(template, field.attname), connection)
        for field in fields
    ]
    slots = [
        (position, _PER_ROW.index(field.attname), field)
        for position, field in enumerate(fields)
        if field.attname in _PER_ROW
    ]
    size = connection.ops.bulk_batch_size(fields, list(rows)) or len(rows)
    table = connection.ops.quote_name(ProfileMapping._meta.db_table)
    columns = ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)
    with connection.cursor() as cursor:
        for start in range(0, len(rows), size):
            chunk = rows[start : start + size]
            params: list[Any] = []
            for row in chunk:
                values = shared.copy()
                for position, index, field in slots:
                    values[position] = field.get_db_prep_save(row[index], connection)
                params.extend(values)
            placeholders: Any = [["%s"] * len(fields)] * len(chunk)  # rows of them (the stubs
            sql = connection.ops.bulk_insert_sql(fields, placeholders)  # say strings)
            cursor.execute(f"INSERT INTO {table} ({columns}) {sql}", params)


def _fields() -> list[Field[Any, Any]]:
    """The concrete fields an insert writes: all but the automatic primary key."""
    meta = ProfileMapping._meta
    return [field for field in meta.concrete_fields if field is not meta.auto_field]


__all__ = ["NewMapping", "insert_new_mappings"]
