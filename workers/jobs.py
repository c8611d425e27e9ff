"""The jobs of the job spine, and its periodic ones (registry: workers/job_registry.py)."""

from __future__ import annotations

from workers.job_registry import job_spec
from workers.periodic import PeriodicJob, periodic_job_declare

DIAGNOSTIC_RUN_EXECUTE = job_spec(
    "workers.tasks.diagnostic_run_execute", old_names=("workers.tasks.run_diagnostic",)
)
JOB_REPUBLISH_UNSENT = job_spec(
    "workers.tasks.job_republish_unsent", old_names=("workers.tasks.republish_unsent_jobs",)
)
JOB_RECORDS_CLEANUP = job_spec(
    "workers.tasks.job_records_cleanup", old_names=("workers.tasks.cleanup_job_records",)
)
JOBS_MARK_LOST = job_spec(
    "workers.tasks.jobs_mark_lost", old_names=("workers.tasks.reconcile_lost_jobs",)
)
QUEUE_DEPTHS_RECORD = job_spec(
    "workers.tasks.queue_depths_record", old_names=("workers.tasks.record_queue_depths",)
)

periodic_job_declare(
    PeriodicJob(
        "Send jobs left in the outbox",
        JOB_REPUBLISH_UNSENT,
        every=60,
        description="Sends jobs recorded by a process that died before its relay sent them.",
    ),
    PeriodicJob(
        "Expire old job records and logs",
        JOB_RECORDS_CLEANUP,
        crontab={"minute": "30", "hour": "4"},
        description="Job rows and logs expire with their results (CELERY_RESULT_EXPIRES).",
    ),
    PeriodicJob(
        "Record SQS queue depths",
        QUEUE_DEPTHS_RECORD,
        every=60,
        description=(
            "Each queue's SQS depth into the database, for the operations page; jobs whose "
            "messages SQS moved to a dead-letter queue say so."
        ),
    ),
    PeriodicJob(
        "Reconcile lost jobs",
        JOBS_MARK_LOST,
        every=60,
        description="Jobs still STARTED on a worker gone past the redelivery window end FAILURE.",
    ),
)
