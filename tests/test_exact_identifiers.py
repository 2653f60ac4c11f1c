"""Ids are compared exactly on every database: case and trailing spaces make another id.

MySQL and MariaDB compare text with the server's default collation (``utf8mb4_general_ci``),
which ignores both; before ``IdentifierField``, a user signing in as ``alice`` took over the
mapping of ``Alice`` there. These tests pass on SQLite and PostgreSQL by nature and guard the
suite's MySQL run; the collation choice itself is tested below without a server.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from django_experience import mappings
from django_experience.fields import (
    MARIADB_EXACT_COLLATION,
    MYSQL_EXACT_COLLATION,
    OLD_MYSQL_EXACT_COLLATION,
    IdentifierField,
    exact_collation,
)
from django_experience.models import PendingProfileDeletion, ProfileMapping
from django_experience.sync.mapping_lookup import mapped_profile_ids


def _rows() -> list[tuple[Any, ...]]:
    return sorted(
        ProfileMapping.objects.values_list("external_id", "profile_id"), key=lambda row: row[0]
    )


@pytest.mark.django_db
def test_users_whose_external_ids_differ_in_case_keep_their_own_profiles() -> None:
    user_model = get_user_model()
    alice = user_model.objects.create(username="alice-upper")
    other = user_model.objects.create(username="alice-lower")

    assert mappings.store_mapping("p-upper", user=alice, external_id="Alice") == "p-upper"
    assert mappings.store_mapping("p-lower", user=other, external_id="alice") == "p-lower"

    assert _rows() == [("Alice", "p-upper"), ("alice", "p-lower")]
    assert mappings.mapped_profile_id(alice) == "p-upper"
    assert mappings.mapped_profile_id(other) == "p-lower"


@pytest.mark.django_db
def test_a_trailing_space_makes_another_external_id() -> None:
    mappings.store_mapping("p-spaced", external_id="trail ")
    mappings.store_mapping("p-bare", external_id="trail")

    assert _rows() == [("trail", "p-bare"), ("trail ", "p-spaced")]


@pytest.mark.django_db
def test_the_mapping_of_one_external_id_is_not_found_for_another_case() -> None:
    mappings.store_mapping("p-upper", external_id="Alice")

    assert mappings.owned_mapping(None, "alice") is None
    assert mappings.owned_mapping(None, "Alice ") is None
    namespace = mappings.namespace()
    assert mapped_profile_ids(["alice", "ALICE"], [], namespace=namespace, using="default") == []


@pytest.mark.django_db
def test_profile_ids_that_differ_in_case_are_two_profiles() -> None:
    mappings.store_mapping("Profile-1", external_id="one")
    mappings.store_mapping("profile-1", external_id="two")

    assert _rows() == [("one", "Profile-1"), ("two", "profile-1")]


@pytest.mark.django_db
def test_namespaces_that_differ_in_case_are_two_namespaces() -> None:
    for environment in ("main", "Main"):
        ProfileMapping.objects.create(
            profile_id="p-1", external_id="x", organization_id="org", environment=environment
        )
        PendingProfileDeletion.objects.create(
            profile_id="p-1", organization_id="org", environment=environment
        )

    assert ProfileMapping.objects.filter(environment="main").count() == 1
    assert PendingProfileDeletion.objects.filter(environment="Main").count() == 1


@pytest.mark.django_db
def test_every_id_column_has_the_exact_collation_on_mysql() -> None:
    if connection.vendor != "mysql":
        pytest.skip("SQLite and PostgreSQL compare text exactly with their default collation")
    expected = exact_collation(connection)
    columns = {
        (ProfileMapping._meta.db_table, name)
        for name in ("profile_id", "external_id", "organization_id", "environment")
    } | {
        (PendingProfileDeletion._meta.db_table, name)
        for name in ("profile_id", "organization_id", "environment")
    }
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name, collation_name FROM information_schema.columns"
            " WHERE table_schema = DATABASE() AND table_name IN (%s, %s)",
            [ProfileMapping._meta.db_table, PendingProfileDeletion._meta.db_table],
        )
        collations = {(table, column): collation for table, column, collation in cursor}
    assert {column: collations[column] for column in columns} == dict.fromkeys(
        columns, expected
    )


def _mysql(*, mariadb: bool, version: tuple[int, ...]) -> Any:
    return _server("mysql", mysql_is_mariadb=mariadb, mysql_version=version)


def _server(vendor: str, **attributes: Any) -> Any:
    """Enough of a database wrapper for a field's ``db_parameters`` (without ``db_type``)."""
    return SimpleNamespace(
        vendor=vendor, ops=connection.ops, data_type_check_constraints={}, **attributes
    )


@pytest.mark.parametrize(
    ("server", "collation"),
    [
        (_mysql(mariadb=True, version=(10, 11, 6)), MARIADB_EXACT_COLLATION),
        (_mysql(mariadb=False, version=(8, 0, 17)), MYSQL_EXACT_COLLATION),
        (_mysql(mariadb=False, version=(8, 4, 3)), MYSQL_EXACT_COLLATION),
        (_mysql(mariadb=False, version=(8, 0, 16)), OLD_MYSQL_EXACT_COLLATION),
        (_server("sqlite"), None),
        (_server("postgresql"), None),
    ],
)
def test_the_exact_collation_of_each_database(server: Any, collation: str | None) -> None:
    assert exact_collation(server) == collation


def test_an_identifier_column_takes_the_exact_collation_unless_one_is_given() -> None:
    # The collation is all IdentifierField adds to CharField's parameters; the type is
    # CharField's own (a real MySQL wrapper's, on the suite's MySQL run).
    mariadb = _mysql(mariadb=True, version=(10, 11, 6))
    plain = IdentifierField(max_length=10)
    plain.db_type = lambda connection: "varchar(10)"  # type: ignore[method-assign]
    chosen = IdentifierField(max_length=10, db_collation="utf8mb4_bin")
    chosen.db_type = lambda connection: "varchar(10)"  # type: ignore[method-assign]

    assert plain.db_parameters(mariadb)["collation"] == MARIADB_EXACT_COLLATION
    assert chosen.db_parameters(mariadb)["collation"] == "utf8mb4_bin"
    assert plain.db_parameters(_server("sqlite"))["collation"] is None
