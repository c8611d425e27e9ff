"""The migration lock: one release migrates at a time, on any number of workers.

Django's `migrate` takes no lock of its own; two at once interleave their DDL and leave a
half-applied schema. A release holds this lock from computing its plan to its last migration.

PostgreSQL: a session-level advisory lock, polled with `pg_try_advisory_lock` rather than
waited on with `pg_advisory_lock`, so the wait has a bound we choose and the waiter can say
what it is waiting for. Session-level, not transaction-level, because a release spans many
transactions (one per migration). It lives on the connection that migrates: if that
connection dies, the lock goes with it and no crashed release can wedge the next one.

SQLite: an exclusive `flock` on a file beside the database. SQLite databases are local files
used by processes on one machine, which is exactly the scope of `flock`; the kernel drops it
when the process dies. A lock row taken with BEGIN IMMEDIATE would also work across
processes, but it needs a table (there is none on a fresh database) and holds SQLite's single
write lock for the whole release, stopping the job log and every other writer.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper

from workers.errors import ApplicationError

# Advisory locks share one key space per database; this one is ASCII "opsqrele".
ADVISORY_LOCK_KEY = 0x6F70_7371_7265_6C65
POLL_SECONDS = 0.5


class MigrationLockTimeout(ApplicationError):
    """Another release held the lock for longer than we were willing to wait."""


@contextmanager
def migration_lock(
    connection: BaseDatabaseWrapper,
    *,
    wait_seconds: float,
    on_wait: Callable[[str], object] = lambda message: None,
) -> Iterator[None]:
    if connection.vendor == "postgresql":
        with _advisory_lock(connection, wait_seconds=wait_seconds, on_wait=on_wait):
            yield
    elif connection.vendor == "sqlite":
        with _file_lock(_sqlite_lock_path(connection), wait_seconds=wait_seconds, on_wait=on_wait):
            yield
    else:
        raise ImproperlyConfigured(f"no migration lock for the {connection.vendor} backend")


@contextmanager
def _advisory_lock(
    connection: BaseDatabaseWrapper, *, wait_seconds: float, on_wait: Callable[[str], object]
) -> Iterator[None]:
    deadline = time.monotonic() + wait_seconds
    announced = False
    while not _pg_fetch(connection, "SELECT pg_try_advisory_lock(%s)", ADVISORY_LOCK_KEY):
        holder = _pg_fetch(
            connection,
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND classid = %s AND objid = %s AND objsubid = 1",
            ADVISORY_LOCK_KEY >> 32,
            ADVISORY_LOCK_KEY & 0xFFFF_FFFF,
        )
        who = f"PostgreSQL backend pid {holder}" if holder else "another session"
        if time.monotonic() >= deadline:
            raise MigrationLockTimeout(
                f"another release ({who}) still holds the migration lock after waiting "
                f"{wait_seconds:g}s; nothing was migrated"
            )
        if not announced:
            on_wait(f"waiting for the migration lock, held by {who} (up to {wait_seconds:g}s)")
            announced = True
        time.sleep(POLL_SECONDS)
    on_wait("migration lock acquired")
    try:
        yield
    finally:
        try:
            _pg_fetch(connection, "SELECT pg_advisory_unlock(%s)", ADVISORY_LOCK_KEY)
        except Exception:
            # A broken connection cannot unlock, but closing it releases the lock.
            connection.close()
            raise


def _pg_fetch(connection: BaseDatabaseWrapper, sql: str, *params: int) -> object:
    with connection.cursor() as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return row[0] if row else None


def _sqlite_lock_path(connection: BaseDatabaseWrapper) -> Path:
    name = str(connection.settings_dict["NAME"])
    if name == ":memory:" or name.startswith("file:"):
        raise ImproperlyConfigured("the migration lock needs an SQLite database file")
    return Path(f"{name}.release-lock")


@contextmanager
def _file_lock(
    path: Path, *, wait_seconds: float, on_wait: Callable[[str], object]
) -> Iterator[None]:
    deadline = time.monotonic() + wait_seconds
    announced = False
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise MigrationLockTimeout(
                        f"another release still holds the migration lock ({path}) after "
                        f"waiting {wait_seconds:g}s; nothing was migrated"
                    ) from None
                if not announced:
                    on_wait(f"waiting for the migration lock {path} (up to {wait_seconds:g}s)")
                    announced = True
                time.sleep(POLL_SECONDS)
        on_wait("migration lock acquired")
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
