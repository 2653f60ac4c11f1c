"""Model fields of the app."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Generic, TypeVar

from django.db import models
from django.db.backends.base.base import BaseDatabaseWrapper

# What a field takes and what it gives, as the stubs' CharField has them (mypy's plugin fills
# them in per field, optional when null=True). Django's own CharField cannot be subscripted,
# so at run time a generic subclass of it stands in.
_ST = TypeVar("_ST", contravariant=True)
_GT = TypeVar("_GT", covariant=True)
if TYPE_CHECKING:
    _CharField = models.CharField
else:

    class _CharField(models.CharField, Generic[_ST, _GT]):
        pass

# Byte-for-byte comparison that also counts trailing spaces ("NO PAD"): MariaDB's since 10.2,
# MySQL's since 8.0.17 (before that, its binary collation ignores trailing spaces).
MARIADB_EXACT_COLLATION = "utf8mb4_nopad_bin"
MYSQL_EXACT_COLLATION = "utf8mb4_0900_bin"
OLD_MYSQL_EXACT_COLLATION = "utf8mb4_bin"


def exact_collation(connection: BaseDatabaseWrapper) -> str | None:
    """The collation that compares text exactly on ``connection``'s database, or ``None`` when
    its default one does (SQLite, PostgreSQL)."""
    if connection.vendor != "mysql":
        return None
    if getattr(connection, "mysql_is_mariadb", False):
        return MARIADB_EXACT_COLLATION
    if getattr(connection, "mysql_version", (8, 0, 17)) < (8, 0, 17):
        return OLD_MYSQL_EXACT_COLLATION
    return MYSQL_EXACT_COLLATION


class IdentifierField(_CharField[_ST, _GT]):
    """A ``CharField`` for an id that is compared exactly on every database.

    MySQL and MariaDB compare text with the server's default collation, which ignores case and
    trailing spaces: there, a lookup of external id ``alice`` found the mapping of ``Alice``
    (another person, to the API) and the unique constraint held them to be one. On those
    databases the column gets a binary collation; on others nothing changes. A ``db_collation``
    given explicitly wins.
    """

    def db_parameters(self, connection: BaseDatabaseWrapper) -> dict[str, Any]:
        parameters = super().db_parameters(connection)
        if self.db_collation is None:
            collation = exact_collation(connection)
            if collation is not None:
                parameters["collation"] = collation
        return parameters
