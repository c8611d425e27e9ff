"""Thin terraform tasks: take a run id, call a service. Routed to the `infra` queue."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from infra_tasks.terraform import services
from workers.enqueue import Requester


@shared_task(bind=True)
def terraform_plan(self: Any, run_id: int) -> str | None:
    return services.run_plan_execute(
        run_id=run_id, task_id=self.request.id, worker=self.request.hostname or ""
    )


@shared_task(bind=True)
def terraform_apply(self: Any, run_id: int) -> str | None:
    return services.run_apply_execute(
        run_id=run_id, task_id=self.request.id, worker=self.request.hostname or ""
    )


@shared_task
def terraform_drift_check_all() -> int:
    """Beat entry: queue a drift check of every workspace."""
    return services.drift_check_request_all(
        requester=Requester.schedule(services.DRIFT_SCHEDULE_NAME)
    )
