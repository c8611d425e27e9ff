"""Thin terraform tasks: take a run id, call a service. Routed to the `infra` queue, but for
the lost-run check (workers/queues.py), which must run when every infra worker is gone.

A step that ends its run cancelled or failed ends its job the same way (REVOKED, FAILURE),
so a job never reads SUCCESS for a run that did not succeed.
"""

from __future__ import annotations

from typing import Any

from celery import shared_task

from infra_tasks.terraform import selectors, services
from infra_tasks.terraform.models import RunState
from workers.enqueue import Requester
from workers.outcomes import job_cancelled, job_failed


@shared_task(bind=True)
def terraform_plan(self: Any, run_id: int) -> str | None:
    state = services.run_plan_execute(
        run_id=run_id, task_id=self.request.id, worker=self.request.hostname or ""
    )
    return _job_end(self, run_id, state)


@shared_task(bind=True)
def terraform_apply(self: Any, run_id: int) -> str | None:
    state = services.run_apply_execute(
        run_id=run_id, task_id=self.request.id, worker=self.request.hostname or ""
    )
    return _job_end(self, run_id, state)


def _job_end(task: Any, run_id: int, state: str | None) -> str | None:
    if state not in (RunState.CANCELLED, RunState.FAILED, RunState.LOST):
        return state
    ended = selectors.run_ending_of_step(run_id=run_id, task_id=task.request.id)
    if ended is None:
        return state  # the run ended in a later step: this one went well
    if state == RunState.CANCELLED:
        job_cancelled(task, ended)
    job_failed(task, ended)


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
