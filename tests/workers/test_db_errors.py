"""A database error mid-job: the log ends with the real cause and the domain row ends failed."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django_celery_results.models import TaskResult

from tests.support.servers import WorkerProcess, wait_until
from workers.enqueue import Requester
from workers.models import DiagnosticRun
from workers.selectors import job_log_since
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db(transaction=True)

# What psycopg reports depends on whether it read the server's FATAL message before the
# socket closed: either says what happened.
CAUSES = (
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
)


def _names_the_cause(text: str) -> bool:
    return any(cause in text for cause in CAUSES)


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
    lines = job_log_since(task_id=run.task_id).lines
    # The log ends with the error (its message may run over several lines).
    last = max(i for i, line in enumerate(lines) if line.startswith("!! "))
    error = "\n".join(lines[last:])
    assert error.startswith("!! OperationalError: ") and _names_the_cause(error), lines[-3:]
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.FAILED
    assert _names_the_cause(run.error), run.error
    result = json.loads(TaskResult.objects.get(task_id=run.task_id).result)
    assert result["exc_type"] == "OperationalError" and _names_the_cause(str(result["exc_message"]))
