"""The jobs of managed databases, and the enforcement pass's schedule (registry:
workers/job_registry.py). Each database's own stop/start rows are written by
services/schedules.py and name DATABASE_SCHEDULED_RUN."""

from __future__ import annotations

from django.conf import settings

from workers.job_registry import job_spec
from workers.periodic import PeriodicJob, periodic_job_declare

DATABASE_ACTION_EXECUTE = job_spec(
    "infra_tasks.rds.tasks.database_action_execute",
    queue="infra",
    old_names=("infra_tasks.rds.tasks.execute_database_action",),
)
DATABASE_SCHEDULED_RUN = job_spec(
    "infra_tasks.rds.tasks.database_scheduled_run",
    queue="infra",
    old_names=("infra_tasks.rds.tasks.run_scheduled_action",),
)
DATABASES_ENFORCE = job_spec(
    "infra_tasks.rds.tasks.databases_enforce",
    queue="infra",
    old_names=("infra_tasks.rds.tasks.enforce_schedules",),
)

ENFORCE_SCHEDULE_NAME = "rds: enforce database schedules"

periodic_job_declare(
    PeriodicJob(
        ENFORCE_SCHEDULE_NAME,
        DATABASES_ENFORCE,
        every=lambda: settings.RDS_ENFORCE_INTERVAL_SECONDS,
        description="Puts back databases that drifted from their schedule; tells staff "
        "about those that stay off (RDS_ENFORCE_INTERVAL_SECONDS).",
    ),
)
