"""The dashboard's job and its schedule (registry: workers/job_registry.py)."""

from __future__ import annotations

from django.conf import settings

from workers.job_registry import job_spec
from workers.periodic import PeriodicJob, periodic_job_declare

ECS_SERVICES_REFRESH = job_spec(
    "infra_tasks.dashboard.tasks.ecs_services_refresh",
    queue="infra",
    old_names=("infra_tasks.dashboard.tasks.refresh_ecs_services",),
)

REFRESH_SCHEDULE_NAME = "dashboard: refresh ECS services"

periodic_job_declare(
    PeriodicJob(
        REFRESH_SCHEDULE_NAME,
        ECS_SERVICES_REFRESH,
        every=lambda: settings.ECS_REFRESH_INTERVAL_SECONDS,
        description="The ECS services' snapshot the dashboard shows "
        "(ECS_REFRESH_INTERVAL_SECONDS).",
    ),
)
