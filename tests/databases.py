"""Databases of their own for tests that run Django in another process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit


@contextmanager
def subprocess_database(sqlite_file: Path) -> Iterator[str]:
    """The URL of an empty database for another process's Django.

    In the suite's PostgreSQL run (``EXPERIENCE_TEST_DATABASE_URL``), a database created for the
    block on that server and dropped after it, whoever is still connected; else ``sqlite_file``.
    """
    url = os.environ.get("EXPERIENCE_TEST_DATABASE_URL")
    if not url:
        yield f"sqlite:///{sqlite_file}"
        return
    import environ
    import psycopg

    config = environ.Env.db_url_config(url)
    name = f"test_experience_sub_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    server = psycopg.connect(
        host=config["HOST"] or None,
        port=config["PORT"] or None,
        user=config["USER"] or None,
        password=config["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )
    with server:
        server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield urlsplit(url)._replace(path=f"/{name}").geturl()
        finally:
            server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
