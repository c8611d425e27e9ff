"""Thin terraform tasks: take a run id, call a service. Routed to the `infra` queue, but for
the lost-run check (workers/queues.py), which must run when every infra worker is gone."""

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


@shared_task(bind=True)
def terraform_state_lock_check(self: Any, run_id: int) -> str | None:
    return services.run_state_lock_check_execute(run_id=run_id, task_id=self.request.id)


@shared_task(bind=True)
def terraform_state_unlock(self: Any, run_id: int) -> str:
    return services.run_state_unlock_execute(run_id=run_id, task_id=self.request.id)


@shared_task
def terraform_drift_check_all() -> int:
    """Beat entry: queue a drift check of every workspace."""
    return services.drift_check_request_all(
        requester=Requester.schedule(services.DRIFT_SCHEDULE_NAME)
    )


@shared_task
def terraform_runs_mark_lost() -> int:
    """Beat entry: mark runs whose worker stopped beating as lost."""
    return services.runs_mark_lost()
