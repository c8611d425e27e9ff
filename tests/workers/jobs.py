"""Job records written straight into the tables, as workers leave them: for pages and
selectors that read many jobs in known states (no worker needed to make a failure)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta

from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.jobs import job_record
from workers.models import Job, RequesterKind


def job_row(
    task_name: str,
    status: str,
    *,
    queue: str = "default",
    args: list[object] | None = None,
    created_ago: timedelta = timedelta(minutes=5),
    seconds: float = 1.0,
    worker: str = "gone@host",
    requester: str = "ops",
) -> TaskResult:
    """One job: its Job record and its result, created `created_ago` and `seconds` long."""
    task_id = str(uuid.uuid4())
    created = timezone.now() - created_ago
    row = job_record(
        task_id,
        task_name,
        status=status,
        queue=queue,
        requester_kind=RequesterKind.USER,
        requester_label=requester,
        task_args=json.dumps(args or [1]),
        task_kwargs="{}",
        worker=worker if status != "PENDING" else None,
    )
    finished = status in {"SUCCESS", "FAILURE", "REVOKED"}
    TaskResult.objects.filter(pk=row.pk).update(
        date_created=created,
        date_started=created if status != "PENDING" else None,
        date_done=created + timedelta(seconds=seconds) if finished else created,
    )
    Job.objects.filter(task_id=task_id).update(created_at=created)
    row.refresh_from_db()
    return row
