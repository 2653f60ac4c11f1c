"""With a router that keeps the mappings in a database of their own, a sign-in's transaction,
lock and savepoints are taken there, not in ``default`` (an inner test session: the databases
are set when Django starts)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

INNER_TESTS = """
import contextlib

import pytest
from django.contrib.auth import get_user_model
from django.db import connections, transaction

from django_experience import mappings
from django_experience.admin import ProfileMappingAdmin
from django_experience.models import ProfileMapping

BOTH = pytest.mark.django_db(databases=["default", "experience"], transaction=True)


@contextlib.contextmanager
def statements(alias):
    # Each statement on ``alias``: its verb, and whether a transaction was open there.
    seen = []
    connection = connections[alias]

    def record(execute, sql, params, many, context):
        verb = sql.split()[0].upper()
        if verb in ("SELECT", "INSERT", "UPDATE", "DELETE"):  # not BEGIN, SAVEPOINT, ...
            seen.append((verb, connection.in_atomic_block))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(record):
        yield seen


def person(username):
    # In default; and mirrored, since SQLite checks the mapping's foreign key in its own
    # database (tests/two_databases/router.py).
    user = get_user_model().objects.create(username=username)
    get_user_model().objects.using("experience").create(pk=user.pk, username=username)
    return user


def mapping(**fields):
    return ProfileMapping.objects.using("experience").create(**fields, **mappings.namespace())


@BOTH
def test_a_sign_in_maps_the_user_in_a_transaction_of_the_mappings_database():
    user = person("ada")
    mapping(profile_id="p-ada")  # an anonymous row of the same profile: absorbed
    with statements("experience") as seen:
        assert mappings.store_mapping("p-ada", user=user, external_id="ada") == "p-ada"
    verbs = [verb for verb, _ in seen]
    assert "SELECT" in verbs and "DELETE" in verbs and "INSERT" in verbs, seen
    assert all(atomic for _, atomic in seen), seen
    [row] = ProfileMapping.objects.using("experience").values_list("external_id", "user_id")
    assert row == ("ada", user.pk)


@BOTH
def test_noting_when_a_user_was_last_seen_takes_its_savepoint_where_the_mapping_is():
    user = person("bob")
    mapping(profile_id="p-bob", user=user)
    with statements("experience") as seen:
        assert mappings.mapped_profile_id(user) == "p-bob"
    assert ("UPDATE", True) in seen and ("UPDATE", False) not in seen, seen
    assert ProfileMapping.objects.using("experience").get().last_seen_at is not None


@BOTH
def test_in_the_callers_transaction_on_the_mappings_database_a_busy_write_is_its_to_retry():
    assert mappings.mapping_database() == "experience"
    assert mappings._may_retry_busy(0, "experience")
    with transaction.atomic(using="experience"):
        assert not mappings._may_retry_busy(0, "experience")
    with transaction.atomic(using="default"):  # the mappings are not in that one
        assert mappings._may_retry_busy(0, "experience")


@BOTH
def test_the_admin_takes_an_answered_id_in_a_savepoint_where_the_mapping_is():
    row = mapping(profile_id="p-old", external_id="carol")
    taken = mapping(profile_id="p-taken", external_id="dave")
    with statements("experience") as seen:
        assert ProfileMappingAdmin._take_profile_id(row, "p-new")
    assert ("UPDATE", True) in seen and ("UPDATE", False) not in seen, seen
    with transaction.atomic(using="experience"):
        assert not ProfileMappingAdmin._take_profile_id(row, taken.profile_id)
        # The refused UPDATE was rolled back to its savepoint: the transaction goes on.
        assert ProfileMapping.objects.using("experience").count() == 2
    assert row.profile_id == "p-new"
"""


def test_mapping_transactions_follow_the_router(pytester: pytest.Pytester) -> None:
    root = Path(__file__).resolve().parent.parent
    pytester.makepyfile(test_inner=INNER_TESTS)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "-o", f"pythonpath={root}",
        "--ds=tests.two_databases.settings", "-q",
    )
    result.assert_outcomes(passed=4)
