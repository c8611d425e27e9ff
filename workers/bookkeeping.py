"""Job records written by hand, for a job no worker runs or finishes.

A worker's run is recorded by Celery's result backend (STARTED, then SUCCESS or FAILURE) and
by `job_enqueue` (the PENDING record, its `Job` row). Two kinds of job are not: a job run in
the calling process (`manage.py release --run-here`, which must migrate before any worker
can start), and a job whose worker is gone (the reconciler ends it). Both write the records
through here, in the same shape a worker's run leaves, so the job pages, filters and
retention treat them like any other job.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from celery import Task, states
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers.enqueue import Requester, celery_task, job_record_pending
from workers.job_registry import JobSpec
from workers.models import Job
from workers.outbox import OutboundJob

# The Job queue of a job run in the calling process rather than by a worker.
IN_PROCESS_QUEUE = "in-process"


def job_record_in_process(
    job: JobSpec | Task,
    *,
    task_id: str,
    requester: Requester,
    worker: str,
    started_at: datetime,
    args: list[Any] | None = None,
    kwargs: dict[str, Any] | None = None,
) -> None:
    """Record a job this process is about to run: its `Job` row (queue "in-process") and its
    TaskResult, STARTED at `started_at` by `worker` (a name for this process). Call it inside
    the transaction that records the domain row; end the job with `job_finish`."""
    message = OutboundJob(
        task=celery_task(job),
        task_id=task_id,
        args=list(args or []),
        kwargs=kwargs or {},
        options={"queue": IN_PROCESS_QUEUE},
    )
    job_record_pending(message, requester=requester)
    # Never to be sent: marking it so keeps the unsent-job sweeper from publishing it. It was
    # never queued either: it reads queued when it started, not after (a release that runs
    # its migrations before its tables exist is recorded once they have run).
    Job.objects.filter(task_id=task_id).update(sent_at=timezone.now(), created_at=started_at)
    TaskResult.objects.filter(task_id=task_id).update(
        status=states.STARTED, date_created=started_at, date_started=started_at, worker=worker
    )


def job_finish(
    *, task_id: str, status: str, result: Any = None, traceback: str | None = None
) -> None:
    """End the job's record: `status` (SUCCESS, or FAILURE with `result=job_failure(...)`),
    its result stored as JSON, its traceback, and the time it was done (now)."""
    TaskResult.objects.filter(task_id=task_id).update(
        status=status, result=json.dumps(result), traceback=traceback, date_done=timezone.now()
    )
