"""PostgreSQL going away under a running system, as a failover or restart does to clients:
only the test database's backends are touched (the server is shared)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection


def other_backends_terminate() -> int:
    """Terminate every connection to the test database but this one; how many."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
        assert name.startswith("test_"), name  # never another database on the shared server
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return len(cursor.fetchall())


@contextmanager
def database_down() -> Iterator[None]:
    """The failover window: every other connection to the test database cut and none
    accepted until the block ends; only this test's own connection lives through it."""
    import psycopg

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_database()")
        (name,) = cursor.fetchone()
    assert name.startswith("test_"), name  # never another database on the shared server
    db = connection.settings_dict
    # A database cannot refuse connections from a session connected to it.
    with psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    ) as admin:
        quoted = connection.ops.quote_name(name)
        admin.execute(f"ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS false")
        try:
            other_backends_terminate()
            yield
        finally:
            admin.execute(f"ALTER DATABASE {quoted} WITH ALLOW_CONNECTIONS true")

