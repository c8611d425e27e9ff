"""Thin tasks for managed databases: take ids, call the service they are named after
(names, queue and former names: infra_tasks/rds/jobs.py)."""

from __future__ import annotations

from typing import Any

from infra_tasks.rds import jobs
from infra_tasks.rds.services import actions, enforcement
from workers.job_registry import job_task


@job_task(jobs.DATABASE_ACTION_EXECUTE)
def database_action_execute(self: Any, action_id: int) -> dict[str, Any] | None:
    return actions.database_action_execute(action_id=action_id, task_id=self.request.id)


@job_task(jobs.DATABASE_SCHEDULED_RUN)
def database_scheduled_run(self: Any, database_id: int, action: str) -> dict[str, Any] | None:
    return actions.database_scheduled_run(
        database_id=database_id, action=action, task_id=self.request.id
    )


@job_task(jobs.DATABASES_ENFORCE)
def databases_enforce(self: Any) -> dict[str, Any]:
    return enforcement.databases_enforce(task_id=self.request.id)
