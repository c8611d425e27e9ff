"""Thin tasks of the job spine: take ids, call a service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from workers import services


@shared_task(bind=True)
def run_diagnostic(self: Any, run_id: int) -> dict[str, Any] | None:
    return services.diagnostic_run_execute(run_id=run_id, task_id=self.request.id)


@shared_task
def republish_unsent_jobs() -> int:
    return services.job_republish_unsent()


@shared_task
def cleanup_job_records() -> int:
    """Companion of celery.backend_cleanup: job rows and logs expire with their results."""
    return services.job_records_cleanup()


@shared_task
def reconcile_lost_jobs() -> int:
    """Periodic: jobs still STARTED on a worker gone past the redelivery window end FAILURE."""
    from workers.reconcile import jobs_mark_lost

    return len(jobs_mark_lost())


@shared_task
def record_queue_depths() -> dict[str, int]:
    """Periodic: each queue's SQS depth into the database, for the operations page."""
    from workers.queue_depths import queue_depths_record

    return {depth.queue: depth.visible for depth in queue_depths_record()}
