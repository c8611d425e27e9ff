"""The dev stack's first start: a fresh SQLite file, no tables, no worker yet."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.support.servers import AwsEndpoint
from workers.devstack import BASE_DIR


def manage(*args: str, database: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**os.environ, "DATABASE_URL": f"sqlite:///{database}", "DJANGO_DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_devstack_setup_migrates_a_fresh_database_through_a_recorded_release(
    tmp_path: Path, sqs_queues: AwsEndpoint
) -> None:
    """`sqs_queues` points this process's environment, which `manage` passes on, at the local
    endpoint: the setup seeds demo jobs (it passed only after another test had started it)."""
    database = tmp_path / "dev.sqlite3"
    setup = ("devstack_setup", "--username", "demo", "--password", "a-demo-password")

    first = manage(*setup, database=database)

    assert first.returncode == 0, first.stderr
    assert "bootstrap: the release record tables are not up to date yet" in first.stdout
    with sqlite3.connect(database) as db:
        releases = db.execute(
            "SELECT version, state, applied, task_id, requester_label FROM releases_release"
        ).fetchall()
        assert len(releases) == 1
        version, state, applied, task_id, requester = releases[0]
        assert version.startswith("dev-") and state == "succeeded" and applied > 50
        assert requester == "manage.py release --run-here"
        assert db.execute(
            "SELECT queue FROM workers_job WHERE task_id = ?", [task_id]
        ).fetchone() == ("in-process",)
        assert db.execute(
            "SELECT status FROM django_celery_results_taskresult WHERE task_id = ?", [task_id]
        ).fetchone() == ("SUCCESS",)
        # Recorded after its migrations ran, it still reads asked for, then started, then
        # done, as its page and its job's show them.
        created, started, finished = db.execute(
            "SELECT created_at, started_at, finished_at FROM releases_release"
        ).fetchone()
        assert created <= started <= finished
        queued, job_started, done = db.execute(
            "SELECT date_created, date_started, date_done FROM django_celery_results_taskresult"
            " WHERE task_id = ?",
            [task_id],
        ).fetchone()
        assert queued <= job_started <= done
        (job_created,) = db.execute(
            "SELECT created_at FROM workers_job WHERE task_id = ?", [task_id]
        ).fetchone()
        assert job_created == queued
        log = "\n".join(
            text
            for (text,) in db.execute(
                "SELECT text FROM workers_joblogchunk WHERE task_id = ? ORDER BY start_line",
                [task_id],
            )
        )
    # The log written after the fact holds the whole run, from before its tables existed.
    assert "Applying contenttypes.0001_initial..." in log
    assert "Applying releases.0001_initial..." in log

    second = manage(*setup, database=database)
    assert second.returncode == 0, second.stderr
    assert f"release {version} already succeeded" in second.stdout
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT count(*) FROM releases_release").fetchone() == (1,)


def test_queued_release_refuses_a_database_that_cannot_record_it_yet(tmp_path: Path) -> None:
    refused = manage("release", "--version", "v1", "--wait", database=tmp_path / "new.sqlite3")
    assert refused.returncode == 1
    assert "cannot hold release records yet" in refused.stderr
    assert "--run-here" in refused.stderr
