"""Helpers for release tests: the probe app's migration state, finished releases, logs."""

from __future__ import annotations

import psycopg
from django.core.management import call_command
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django_celery_results.models import TaskResult

from infra_tasks.releases.models import FINISHED_STATES, Release
from tests.support.servers import wait_until
from workers.selectors import job_log_since

PROBE = "release_probe"
PROBE_MIGRATIONS = [
    "0001_initial",
    "0002_remove_widget_legacy_code",
    "0003_widget_colour",
    "0004_hold",
    "0005_fail",
]


def probe_at(target: str) -> None:
    """Roll the probe app back to `target`: every later migration is pending again."""
    call_command("migrate", PROBE, target, verbosity=0)


def probe_applied() -> list[str]:
    return sorted(
        MigrationRecorder.Migration.objects.filter(app=PROBE).values_list("name", flat=True)
    )


def plan_of(*names: str) -> list[dict[str, str]]:
    return [{"app": PROBE, "name": name, "direction": "forward"} for name in names]


def release_finished(version: str, timeout: float = 120) -> Release:
    release = wait_until(
        lambda: Release.objects.filter(version=version, state__in=FINISHED_STATES).first(),
        timeout=timeout,
        message=f"release {version} to finish",
    )
    assert isinstance(release, Release)
    return release


def log_of(task_id: str) -> list[str]:
    return job_log_since(task_id=task_id, max_chunks=10_000).lines


def other_session(*, autocommit: bool = True) -> psycopg.Connection:
    """A second connection to the test database, as another process would have."""
    db = connection.settings_dict
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        dbname=db["NAME"],
        autocommit=autocommit,
    )


def job_status(task_id: str, expected: str) -> str:
    """Wait for the job to reach `expected`: the release is recorded before its task returns."""

    def status() -> str | None:
        return TaskResult.objects.filter(task_id=task_id).values_list("status", flat=True).first()

    wait_until(lambda: status() == expected, timeout=30, message=f"job {task_id} {expected}")
    return expected
