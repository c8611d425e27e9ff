"""A database error mid-job: the log ends with the real cause and the domain row ends failed."""

from __future__ import annotations

import pytest
from django.db import connection
from django_celery_results.models import TaskResult

from tests.support.jobs import assert_failed_on_connection_loss
from tests.support.servers import WorkerProcess, wait_until
from workers.enqueue import Requester
from workers.selectors import job_log_since
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db(transaction=True)


def _terminate_job_connections() -> int:
    """pg_terminate_backend on the connections that last wrote a job row or its log: the
    running job's."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() "
            "AND query ILIKE %s",
            ['%"workers_job%'],
        )
        return len(cursor.fetchall())


def test_a_connection_terminated_mid_job_ends_the_log_with_the_real_cause(
    worker: WorkerProcess,
) -> None:
    run = diagnostic_run_start(requester=Requester.cli("test"), lines=200, duration_seconds=20)
    wait_until(
        lambda: len(job_log_since(task_id=run.task_id).lines) >= 5,
        message="the job to be writing its log",
    )
    assert _terminate_job_connections() >= 1

    wait_until(
        lambda: TaskResult.objects.filter(task_id=run.task_id, status="FAILURE").exists(),
        message="the job to fail",
    )
    assert_failed_on_connection_loss(run)
