"""The migration lock against real PostgreSQL, and the SQLite flavour's real flock."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.db import connection

from infra_tasks.releases.locking import (
    ADVISORY_LOCK_KEY,
    MigrationLockTimeout,
    _file_lock,
    migration_lock,
)
from tests.infra_tasks.releases.support import other_session

pytestmark = pytest.mark.django_db(transaction=True)


def test_second_holder_waits_up_to_the_bound_then_fails_naming_the_holder() -> None:
    messages: list[str] = []
    with other_session() as other:
        other.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        holder = other.info.backend_pid
        with (
            pytest.raises(MigrationLockTimeout, match=f"pid {holder}.*nothing was migrated"),
            migration_lock(connection, wait_seconds=1, on_wait=messages.append),
        ):
            pytest.fail("the lock was held elsewhere")
        assert messages[0].startswith(
            f"waiting for the migration lock, held by PostgreSQL backend pid {holder}"
        )
        other.execute("SELECT pg_advisory_unlock(%s)", [ADVISORY_LOCK_KEY])

    with migration_lock(connection, wait_seconds=1, on_wait=messages.append):
        assert messages[-1] == "migration lock acquired"
        with other_session() as other:
            taken = other.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
            assert taken.fetchone() == (False,)
    # Released on exit: another session can take it now.
    with other_session() as other:
        assert other.execute("SELECT pg_try_advisory_lock(%s)", [ADVISORY_LOCK_KEY]).fetchone() == (
            True,
        )


def test_sqlite_file_lock_excludes_a_second_holder_until_released(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3.release-lock"
    # The inner lock opens a second file description: what another process would have.
    with (
        _file_lock(path, wait_seconds=1, on_wait=lambda m: None),
        pytest.raises(MigrationLockTimeout, match="still holds the migration lock"),
        _file_lock(path, wait_seconds=0.6, on_wait=lambda m: None),
    ):
        pytest.fail("flock let a second holder in")
    with _file_lock(path, wait_seconds=0, on_wait=lambda m: None):
        pass
