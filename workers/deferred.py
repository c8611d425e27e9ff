"""Jobs that may start only later than SQS can hold a message back (15 minutes).

Such a job is recorded at once like any other (PENDING, with its requester and its
`run_after`), but no message is sent: a one-off clocked django-celery-beat entry, written in
the same transaction, tells the beat scheduler (workers/beat.py) to send the recorded job,
with its own task id, when it comes due. No worker holds the message meanwhile, so nothing
is redelivered while it waits and a restarted beat still sends it.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

from django.db import transaction
from django_celery_beat.models import ClockedSchedule, PeriodicTask

from workers.models import Job

logger = logging.getLogger(__name__)

# Marks a beat entry as "send this recorded job" rather than "start a new job".
DEFERRED_JOB_HEADER = "opsqueue_deferred_job"


def deferred_entry_name(task_id: str) -> str:
    return f"Deferred job {task_id}"


def is_deferred_entry(entry_name: str, entry_task: str, task_id: str) -> bool:
    """Whether a beat entry carrying the deferred-job header is the one written for that job:
    its name, and the recorded job's own task."""
    return entry_name == deferred_entry_name(task_id) and (
        Job.objects.filter(task_id=task_id, task_name=entry_task).exists()
    )


def deferred_job_schedule(*, task_id: str, task_name: str, queue: str, run_after: datetime) -> None:
    """Write the clocked entry that sends the recorded job `task_id` at `run_after`.
    Runs inside the enqueuing transaction: a rollback leaves neither the job nor its entry."""
    with transaction.atomic(savepoint=False):
        clocked = ClockedSchedule.objects.create(clocked_time=run_after)
        PeriodicTask.objects.create(
            name=deferred_entry_name(task_id),
            task=task_name,
            clocked=clocked,
            one_off=True,
            queue=queue,
            headers=json.dumps({DEFERRED_JOB_HEADER: task_id}),
            description=f"Sends job {task_id}, recorded earlier, when it may start.",
        )


def deferred_job_send(*, task_id: str) -> bool:
    """Send the recorded job now, unless it went already or is no longer waiting.
    True if it was sent. Raises one of the broker errors if the broker cannot take it."""
    from workers.services import job_send_recorded

    sent = job_send_recorded(task_id=task_id)
    if not sent:
        logger.info("deferred job %s: already sent or no longer pending", task_id)
    return sent


def deferred_entries_remove(*, task_ids: list[str]) -> None:
    """Remove the clocked entries of these jobs (run or not: their records are going)."""
    entries = PeriodicTask.objects.filter(name__in=[deferred_entry_name(t) for t in task_ids])
    clocked_ids = list(entries.values_list("clocked_id", flat=True))
    entries.delete()
    ClockedSchedule.objects.filter(pk__in=clocked_ids, periodictask__isnull=True).delete()
