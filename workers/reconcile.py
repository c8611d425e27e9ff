"""Jobs whose worker is gone end visibly: the reconciler (periodic task "Reconcile lost jobs").

A worker that dies stops extending its messages, so SQS delivers them again within one
visibility timeout and another worker takes them over (its start overwrites the job's
worker). A job still STARTED on a worker whose heartbeat has been gone for longer than that
window was not taken over (no worker free, or the message went to the dead-letter queue):
it ends FAILURE "worker lost", and so does its domain row. Should the message still come
back, the worker that takes it marks it STARTED again.

The worker may also live on while the process running the job died (a pool process killed
by the kernel for memory, or by a person): nobody renews the job's claim (workers/claims.py)
any more. A redelivery that found the dead process's lease still running normally leaves a
recheck that takes the job over once the lease has run out; if that copy could not be sent,
nothing comes back. A STARTED job whose claim ran out longer than that window ago is lost too.
A job killed at its hard time limit is recorded FAILURE by its worker's main process, where
the job's own code never runs: `job_ended_unseen` ends its domain row there (from the task
class, workers/claims.py).

Each app registers what ends its domain row (`job_lost_register`, from its AppConfig.ready);
terraform runs have their own, finer check on their run heartbeat (issue 11), which the
reconciler runs instead of deciding itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from celery import states
from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_results.models import TaskResult

from workers.bookkeeping import job_finish
from workers.errors import job_failure
from workers.job_registry import task_name_lookup
from workers.models import Job, WorkerHeartbeat
from workers.operations import HEARTBEAT_MISSES_ALLOWED

logger = logging.getLogger(__name__)

WORKER_LOST = "worker lost"

# Task name -> what ends its domain row, called with the task id and the reason: a callable
# or its dotted path (imported when first needed, so registering imports no service).
LostHandler = Callable[..., object]
_lost_handlers: dict[str, LostHandler | str] = {}


def job_lost_register(task_names: Iterable[str], handler: LostHandler | str) -> None:
    """Register `handler(task_id=..., reason=...)` for lost jobs of these tasks."""
    for name in task_names:
        _lost_handlers[name] = handler


def lost_window() -> timedelta:
    """How long a worker's heartbeat must be gone before its jobs count as lost."""
    return timedelta(
        seconds=settings.SQS_VISIBILITY_TIMEOUT_SECONDS
        + settings.WORKER_HEARTBEAT_SECONDS * HEARTBEAT_MISSES_ALLOWED
    )


def jobs_mark_lost(*, now: datetime | None = None) -> list[str]:
    """End every STARTED job whose worker, or whose claim, is gone past the window; return
    their task ids."""
    now = now or timezone.now()
    cutoff = now - lost_window()
    alive = WorkerHeartbeat.objects.filter(last_seen_at__gte=cutoff).values("hostname")
    unclaimed = Job.objects.filter(claimed_until__lt=cutoff).values("task_id")
    candidates = (
        TaskResult.objects.filter(status=states.STARTED, date_started__lt=cutoff)
        .filter(~Q(worker__in=alive) | Q(task_id__in=unclaimed))
        .values_list("task_id", flat=True)
    )
    lost = []
    for task_id in list(candidates[:500]):
        if _mark_lost(task_id, cutoff=cutoff):
            lost.append(task_id)
    return lost


def _mark_lost(task_id: str, *, cutoff: datetime) -> bool:
    with transaction.atomic():
        result = TaskResult.objects.select_for_update().filter(task_id=task_id).first()
        # Looked at again under the lock: another worker may have taken it over since.
        if result is None or result.status != states.STARTED:
            return False
        worker_alive = WorkerHeartbeat.objects.filter(
            hostname=result.worker, last_seen_at__gte=cutoff
        ).exists()
        claim = (
            Job.objects.filter(task_id=task_id, claimed_until__lt=cutoff)
            .values_list("claimed_by", "claimed_until")
            .first()
        )
        if not worker_alive:
            last_seen = (
                WorkerHeartbeat.objects.filter(hostname=result.worker)
                .values_list("last_seen_at", flat=True)
                .first()
            )
            reason = (
                f"{WORKER_LOST}: {result.worker or 'its worker'} last seen "
                f"{last_seen.isoformat() if last_seen else 'never'}"
            )
        elif claim is not None and claim[1] is not None:
            # The claim names the process (worker:pid) that held it: a duplicate delivery
            # may since have written another worker's name on the result.
            reason = (
                f"{WORKER_LOST}: the process running it ({claim[0] or result.worker}) "
                f"stopped renewing its claim at {claim[1].isoformat()}"
            )
        else:
            return False
        job_finish(
            task_id=task_id,
            status=states.FAILURE,
            result=job_failure("WorkerLost", reason),
            traceback=reason,
        )
        job_ended_unseen(task_name=result.task_name, task_id=task_id, reason=reason)
    logger.warning("job %s [%s]: %s", result.task_name, task_id, reason)
    return True


def job_ended_unseen(*, task_name: str | None, task_id: str, reason: str) -> None:
    """End the domain row of a job that ended where its own code could not say so (its
    worker lost, killed at its hard time limit), through its app's registered handler."""
    handler = task_name_lookup(_lost_handlers, task_name)
    if handler is not None:
        mark: LostHandler = import_string(handler) if isinstance(handler, str) else handler
        mark(task_id=task_id, reason=reason)
