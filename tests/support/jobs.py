"""A job's records as a finished or running worker leaves them, written straight into the
tables: for pages that show a job without running one."""

from __future__ import annotations

from typing import Any

from django_celery_results.models import TaskResult

from workers.joblog import JobLogWriter
from workers.models import Job, RequesterKind


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
