"""Find the mappings of an import batch's people in one query built without the ORM's layers.

Before a batch is sent, its people's mappings are looked up (an external id or a user already
mapped updates that profile). Through the queryset, building and compiling that query cost
twice what the database took to answer it, for every batch of 50 rows. The statement is always
the same but for how many values it lists, so it is written here once per shape, each value
prepared by its own field and each column read back through the converters the ORM would
apply (a user model's UUID primary key comes back as a ``UUID``, as with ``values_list``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from django.db import connections
from django.db.models import Field

from django_experience.models import ProfileMapping

# Values per IN list: a batch fits in one statement, a huge --batch-size in a few, and no
# statement comes near a backend's limit of parameters (999 in older SQLite builds).
MAX_LISTED = 400

_Converter = Callable[[Any, Any, Any], Any]


def mapped_profile_ids(
    external_ids: Sequence[str],
    user_pks: Sequence[Any],
    *,
    namespace: Mapping[str, str],
    using: str,
) -> list[tuple[str | None, Any, str]]:
    """``(external id, user pk, profile id)`` of each mapping in ``namespace`` (organization
    and environment) of one of ``external_ids`` or one of ``user_pks``, read from ``using``."""
    connection = connections[using]
    meta = ProfileMapping._meta
    fields = [meta.get_field(name) for name in ("external_id", "user", "profile_id")]
    external, user, profile = (_concrete(field) for field in fields)
    quote = connection.ops.quote_name
    organization = _concrete(meta.get_field("organization_id"))
    environment = _concrete(meta.get_field("environment"))
    head = (
        f"SELECT {quote(str(external.column))}, {quote(str(user.column))}, "
        f"{quote(str(profile.column))} FROM {quote(meta.db_table)} "
        f"WHERE {quote(str(organization.column))} = %s AND {quote(str(environment.column))} = %s"
    )
    shared = [
        organization.get_db_prep_value(namespace["organization_id"], connection),
        environment.get_db_prep_value(namespace["environment"], connection),
    ]
    converters = [_converters(field, connection) for field in (external, user, profile)]
    user_target = getattr(user, "target_field", user)
    found: list[tuple[str | None, Any, str]] = []
    for start in range(0, max(len(external_ids), len(user_pks)), MAX_LISTED):
        end = start + MAX_LISTED
        ids = [external.get_db_prep_value(v, connection) for v in external_ids[start:end]]
        pks = [user_target.get_db_prep_value(v, connection) for v in user_pks[start:end]]
        # One SELECT per owner column, joined by UNION: with OR between the two lists, SQLite
        # searched the namespace's whole index, so each batch of a --users import cost more
        # the more mappings there were. Each SELECT here searches its own unique index.
        selects, params = [], []
        for column, values in ((external, ids), (user, pks)):
            if values:
                listed = ", ".join(["%s"] * len(values))
                selects.append(f"{head} AND {quote(str(column.column))} IN ({listed})")
                params.extend([*shared, *values])
        if not selects:
            continue
        with connection.cursor() as cursor:
            cursor.execute(" UNION ".join(selects), params)
            for raw in cursor.fetchall():
                row = list(raw)
                for position, column_converters in enumerate(converters):
                    for converter, expression in column_converters:
                        row[position] = converter(row[position], expression, connection)
                found.append((row[0], row[1], row[2]))
    return found


def _concrete(field: object) -> Field[Any, Any]:
    assert isinstance(field, Field)
    return field


def _converters(field: Field[Any, Any], connection: Any) -> list[tuple[_Converter, Any]]:
    """What the ORM applies to a value of ``field``'s column read back (``SQLCompiler``'s
    backend converters, then the field's own)."""
    column = field.get_col(ProfileMapping._meta.db_table)
    found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
    return [(converter, column) for converter in found]


__all__ = ["MAX_LISTED", "mapped_profile_ids"]
