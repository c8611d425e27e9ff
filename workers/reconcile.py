"""Jobs whose worker is gone end visibly: the reconciler (periodic task "Reconcile lost jobs").

A worker that dies stops extending its messages, so SQS delivers them again within one
visibility timeout and another worker takes them over (its start overwrites the job's
worker). A job still STARTED on a worker whose heartbeat has been gone for longer than that
window was not taken over (no worker free, or the message went to the dead-letter queue):
it ends FAILURE "worker lost", and so does its domain row. Should the message still come
back, the worker that takes it marks it STARTED again.

Terraform runs have their own, finer check on their run heartbeat (issue 11): for them the
reconciler runs that check instead of deciding itself.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from celery import states
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from django_celery_results.models import TaskResult

from workers.bookkeeping import job_failure, job_finish
from workers.models import WorkerHeartbeat
from workers.operations import HEARTBEAT_MISSES_ALLOWED

logger = logging.getLogger(__name__)

WORKER_LOST = "worker lost"

# Task name -> what ends its domain row, given the task id and the reason.
DOMAIN_LOST_HANDLERS: dict[str, str] = {
    "workers.tasks.diagnostic_run_execute": "workers.services.diagnostic_run_mark_lost",
    "infra_tasks.terraform.tasks.terraform_plan": "workers.reconcile.terraform_runs_check_lost",
    "infra_tasks.terraform.tasks.terraform_apply": "workers.reconcile.terraform_runs_check_lost",
}


def lost_window() -> timedelta:
    """How long a worker's heartbeat must be gone before its jobs count as lost."""
    return timedelta(
        seconds=settings.SQS_VISIBILITY_TIMEOUT_SECONDS
        + settings.WORKER_HEARTBEAT_SECONDS * HEARTBEAT_MISSES_ALLOWED
    )


def jobs_mark_lost(*, now: datetime | None = None) -> list[str]:
    """End every STARTED job whose worker is gone past the window; return their task ids."""
    now = now or timezone.now()
    cutoff = now - lost_window()
    alive = WorkerHeartbeat.objects.filter(last_seen_at__gte=cutoff).values("hostname")
    candidates = (
        TaskResult.objects.filter(status=states.STARTED, date_started__lt=cutoff)
        .exclude(worker__in=alive)
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
        if WorkerHeartbeat.objects.filter(
            hostname=result.worker, last_seen_at__gte=cutoff
        ).exists():
            return False
        last_seen = (
            WorkerHeartbeat.objects.filter(hostname=result.worker)
            .values_list("last_seen_at", flat=True)
            .first()
        )
        reason = (
            f"{WORKER_LOST}: {result.worker or 'its worker'} last seen "
            f"{last_seen.isoformat() if last_seen else 'never'}"
        )
        job_finish(
            task_id=task_id,
            status=states.FAILURE,
            result=job_failure("WorkerLost", reason),
            traceback=reason,
        )
        handler = DOMAIN_LOST_HANDLERS.get(result.task_name or "")
        if handler:
            mark: Callable[..., object] = import_string(handler)
            mark(task_id=task_id, reason=reason)
    logger.warning("job %s [%s]: %s", result.task_name, task_id, reason)
    return True


def terraform_runs_check_lost(*, task_id: str, reason: str) -> None:
    from infra_tasks.terraform.services import runs_mark_lost

    runs_mark_lost()
