"""Thin terraform tasks: take a run id, call the service each is named after (names, queues
and former names: infra_tasks/terraform/jobs.py).

A step that ends its run cancelled or failed ends its job the same way (REVOKED, FAILURE),
so a job never reads SUCCESS for a run that did not succeed.
"""

from __future__ import annotations

from typing import Any

from infra_tasks.terraform import jobs, selectors
from infra_tasks.terraform.models import RunState
from infra_tasks.terraform.services import execution, runs
from workers.enqueue import Requester
from workers.job_registry import job_task
from workers.joblog import JobLogWriter
from workers.outcomes import job_cancelled, job_failed
from workers.selectors import job_requester


@job_task(jobs.RUN_PLAN_EXECUTE)
def run_plan_execute(self: Any, run_id: int) -> str | None:
    state = execution.run_plan_execute(
        run_id=run_id,
        task_id=self.request.id,
        worker=self.request.hostname or "",
        taken_over=bool(getattr(self.request, "taken_over", False)),
    )
    return _job_end(self, run_id, state)


@job_task(jobs.RUN_APPLY_EXECUTE)
def run_apply_execute(self: Any, run_id: int) -> str | None:
    state = execution.run_apply_execute(
        run_id=run_id,
        task_id=self.request.id,
        worker=self.request.hostname or "",
        taken_over=bool(getattr(self.request, "taken_over", False)),
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


@job_task(jobs.RUN_STATE_LOCK_CHECK_EXECUTE)
def run_state_lock_check_execute(self: Any, run_id: int) -> str | None:
    return execution.run_state_lock_check_execute(run_id=run_id, task_id=self.request.id)


@job_task(jobs.RUN_STATE_UNLOCK_EXECUTE)
def run_state_unlock_execute(self: Any, run_id: int) -> str:
    return execution.run_state_unlock_execute(run_id=run_id, task_id=self.request.id)


@job_task(jobs.DRIFT_CHECK_REQUEST_ALL)
def drift_check_request_all(self: Any) -> int:
    """Beat entry: queue a drift check of every workspace, asked by whoever started this job
    (the schedule, or the person who pressed its Run now)."""
    requester = job_requester(task_id=self.request.id)
    with JobLogWriter(self.request.id) as log:
        return runs.drift_check_request_all(
            requester=requester or Requester.schedule(jobs.DRIFT_SCHEDULE_NAME), log=log
        )


@job_task(jobs.RUNS_MARK_LOST, bind=False)
def runs_mark_lost() -> int:
    """Beat entry: mark runs whose worker stopped beating as lost."""
    return runs.runs_mark_lost()
