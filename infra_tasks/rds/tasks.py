"""Thin tasks for managed databases (routed to the `infra` queue by module)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from infra_tasks.rds import services


@shared_task(bind=True)
def execute_database_action(self: Any, action_id: int) -> dict[str, Any] | None:
    return services.database_action_execute(action_id=action_id, task_id=self.request.id)


@shared_task(bind=True)
def run_scheduled_action(self: Any, database_id: int, action: str) -> dict[str, Any] | None:
    return services.database_scheduled_run(
        database_id=database_id, action=action, task_id=self.request.id
    )


@shared_task(bind=True)
def enforce_schedules(self: Any) -> dict[str, Any]:
    return services.databases_enforce(task_id=self.request.id)
