"""Thin tasks of the job spine: take ids, call a service (names: workers/jobs.py)."""

from __future__ import annotations

from typing import Any

from workers import dead_letters, jobs, lost_messages, queue_depths, reconcile, services
from workers.job_registry import job_task


@job_task(jobs.DIAGNOSTIC_RUN_EXECUTE)
def diagnostic_run_execute(self: Any, run_id: int) -> dict[str, Any] | None:
    return services.diagnostic_run_execute(run_id=run_id, task_id=self.request.id)


@job_task(jobs.JOB_REPUBLISH_UNSENT, bind=False)
def job_republish_unsent() -> int:
    return services.job_republish_unsent()


@job_task(jobs.JOB_RECORDS_CLEANUP, bind=False)
def job_records_cleanup() -> int:
    """Companion of celery.backend_cleanup: job rows and logs expire with their results."""
    return services.job_records_cleanup()


@job_task(jobs.JOBS_MARK_LOST, bind=False)
def jobs_mark_lost() -> int:
    """Jobs still STARTED on a worker gone past the redelivery window end FAILURE."""
    return len(reconcile.jobs_mark_lost())


@job_task(jobs.QUEUE_DEPTHS_RECORD)
def queue_depths_record(self: Any) -> dict[str, int]:
    """Each queue's SQS depth into the database, for the operations page; where a
    dead-letter queue holds messages, their jobs say so (messages SQS moved there itself);
    and a queued job sent to a queue SQS has made again since ends saying its message was
    lost with the old one."""
    # This job's own message is in flight on its queue while it samples (run from a
    # message; none when called in-process).
    own_queue = (self.request.delivery_info or {}).get("routing_key")
    depths = queue_depths.queue_depths_record(own_queue=own_queue)
    lost_messages.jobs_lost_with_their_queue_record(depths=depths)
    dead_letters.dead_lettered_jobs_record(
        queues=[depth.queue for depth in depths if depth.dead_letters and not depth.error]
    )
    return {depth.queue: depth.visible for depth in depths}
