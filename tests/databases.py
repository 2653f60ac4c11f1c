"""Databases of their own for tests that run Django in another process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import django
import pytest


@contextmanager
def subprocess_database(sqlite_file: Path) -> Iterator[str]:
    """The URL of an empty database for another process's Django.

    In the suite's PostgreSQL or MySQL run (``EXPERIENCE_TEST_DATABASE_URL``), a database
    created for the block on that server and dropped after it, whoever is still connected; else
    ``sqlite_file``.
    """
    url = os.environ.get("EXPERIENCE_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{sqlite_file}"
        return
    name = f"test_experience_sub_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    if urlsplit(url).scheme.startswith("mysql"):
        with _mysql_database(url, name) as database_url:
            yield database_url
        return
    import psycopg

    # libpq takes the URL itself: the same server and user, its maintenance database.
    with psycopg.connect(_with_database(url, "postgres"), autocommit=True) as server:
        server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(url, name)
        finally:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_django_tasks_db() -> None:
    """Skip unless the database task backend can be migrated in the suite's database.

    django-tasks-db 0.12, the last release for Django 4.2, renames an index MySQL and MariaDB
    never create (a partial one) and fails to migrate there; 0.13 fixes it for Django 5.2 on.
    """
    pytest.importorskip("django_tasks_db")
    url = os.environ.get("EXPERIENCE_TEST_DATABASE_URL", "")
    if django.VERSION < (5, 2) and urlsplit(url).scheme.startswith("mysql"):
        pytest.skip("django-tasks-db for Django 4.2 cannot migrate on MySQL or MariaDB")


@contextmanager
def _mysql_database(url: str, name: str) -> Iterator[str]:
    import MySQLdb

    parts = urlsplit(url)
    server = MySQLdb.connect(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=parts.username or "",
        password=parts.password or "",
    )
    try:
        server.cursor().execute(f"CREATE DATABASE `{name}`")
        try:
            yield _with_database(url, name)
        finally:
            server.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        server.close()


def _with_database(url: str, name: str) -> str:
    return urlsplit(url)._replace(path=f"/{name}").geturl()
