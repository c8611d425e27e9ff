"""Jobs in tests: a job's records as a finished or running worker leaves them, written
straight into the tables (for pages that show a job without running one); the state a job's
result is in; a diagnostic job queued onto a test's own SQS queues."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django_celery_results.models import TaskResult

from workers.joblog import JobLogWriter
from workers.models import DiagnosticRun, Job, RequesterKind


def job_record(
    task_id: str,
    task_name: str,
    *,
    status: str,
    queue: str = "default",
    requester_kind: str = RequesterKind.CLI,
    requester_label: str = "test",
    log: str | None = None,
    **result: Any,
) -> TaskResult:
    """The job's `Job` row (requested from the command line unless told), its result in
    `status` (with any other `result` fields) and, when given, one line of log."""
    Job.objects.create(
        task_id=task_id,
        task_name=task_name,
        queue=queue,
        requester_kind=requester_kind,
        requester_label=requester_label,
    )
    if log is not None:
        with JobLogWriter(task_id, redact=lambda text: text) as writer:
            writer.line(log)
    return TaskResult.objects.create(task_id=task_id, task_name=task_name, status=status, **result)


def job_status(task_id: str) -> str | None:
    """The state a job's result is in now (None before it is recorded)."""
    return TaskResult.objects.filter(task_id=task_id).values_list("status", flat=True).first()


def diagnostic_queued(
    prefix: str,
    *,
    queue: str,
    duration_seconds: float,
    lines: int = 10,
    endpoint_url: str | None = None,
) -> DiagnosticRun:
    """A diagnostic run queued onto `queue` among the SQS queues named with `prefix` (at
    `endpoint_url`, if given). Recorded and sent even if this process believes SQS is down:
    its probe asks the session's queues, not these."""
    from tests.support.broker import publishing_to
    from workers.enqueue import Requester, job_enqueue, new_task_id
    from workers.tasks import diagnostic_run_execute

    with publishing_to(prefix, endpoint_url=endpoint_url), transaction.atomic():
        run = DiagnosticRun.objects.create(
            lines=lines, duration_seconds=duration_seconds, task_id=new_task_id()
        )
        job_enqueue(
            diagnostic_run_execute,
            requester=Requester.cli("test"),
            args=[run.pk],
            task_id=run.task_id,
            queue=queue,
            refuse_if_broker_down=False,
        )
    return run


# What psycopg reports for a connection PostgreSQL terminated depends on whether it read the
# server's FATAL message before the socket closed: either names what happened.
CONNECTION_LOST = (
    "terminating connection due to administrator command",
    "server closed the connection unexpectedly",
)


def names_connection_loss(text: str) -> bool:
    return any(cause in text for cause in CONNECTION_LOST)


def log_error_at_end(task_id: str) -> str:
    """The error a job's log ends with: from its last "!! " line on (a database error's
    message may run over several lines)."""
    from workers.selectors import job_log_since

    lines = job_log_since(task_id=task_id).lines
    last = max((i for i, line in enumerate(lines) if line.startswith("!! ")), default=None)
    assert last is not None, lines[-3:]
    return "\n".join(lines[last:])


def assert_failed_on_connection_loss(run: DiagnosticRun) -> None:
    """A diagnostic job whose database connection was cut mid-run: its result, its run and
    the end of its log each name what happened."""
    import json

    outcome = json.loads(TaskResult.objects.get(task_id=run.task_id).result)
    assert outcome["exc_type"] == "OperationalError", outcome
    assert names_connection_loss(str(outcome["exc_message"])), outcome
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.FAILED
    assert names_connection_loss(run.error), run.error
    error = log_error_at_end(run.task_id)
    assert error.startswith("!! OperationalError: ") and names_connection_loss(error), error
