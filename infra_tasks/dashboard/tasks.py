"""Thin tasks of the dashboard (name, queue and former name: infra_tasks/dashboard/jobs.py)."""

from __future__ import annotations

from typing import Any

from infra_tasks.dashboard import jobs, services
from workers.job_registry import job_task


@job_task(jobs.ECS_SERVICES_REFRESH, bind=False)
def ecs_services_refresh() -> dict[str, Any]:
    return services.ecs_services_refresh()
