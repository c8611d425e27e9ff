"""The terraform jobs and their periodic ones (registry: workers/job_registry.py).

Every step runs on the `infra` queue but the lost-run check, which must run when every infra
worker is gone.
"""

from __future__ import annotations

from workers.job_registry import job_spec
from workers.periodic import PeriodicJob, periodic_job_declare

_TASKS = "infra_tasks.terraform.tasks."
INFRA = "infra"

RUN_PLAN_EXECUTE = job_spec(
    f"{_TASKS}run_plan_execute", queue=INFRA, old_names=(f"{_TASKS}terraform_plan",)
)
RUN_APPLY_EXECUTE = job_spec(
    f"{_TASKS}run_apply_execute", queue=INFRA, old_names=(f"{_TASKS}terraform_apply",)
)
RUN_STATE_LOCK_CHECK_EXECUTE = job_spec(
    f"{_TASKS}run_state_lock_check_execute",
    queue=INFRA,
    old_names=(f"{_TASKS}terraform_state_lock_check",),
)
RUN_STATE_UNLOCK_EXECUTE = job_spec(
    f"{_TASKS}run_state_unlock_execute",
    queue=INFRA,
    old_names=(f"{_TASKS}terraform_state_unlock",),
)
DRIFT_CHECK_REQUEST_ALL = job_spec(
    f"{_TASKS}drift_check_request_all",
    queue=INFRA,
    old_names=(f"{_TASKS}terraform_drift_check_all",),
)
# It notices infra workers that are gone: it must not wait for one.
RUNS_MARK_LOST = job_spec(
    f"{_TASKS}runs_mark_lost", queue="default", old_names=(f"{_TASKS}terraform_runs_mark_lost",)
)

DRIFT_SCHEDULE_NAME = "Terraform drift check"
LOST_RUNS_SCHEDULE_NAME = "Terraform lost runs"

periodic_job_declare(
    PeriodicJob(
        DRIFT_SCHEDULE_NAME,
        DRIFT_CHECK_REQUEST_ALL,
        crontab={"minute": "0", "hour": "6"},
        description="Plans each workspace with -detailed-exitcode; flags and e-mails drift.",
    ),
    PeriodicJob(
        LOST_RUNS_SCHEDULE_NAME,
        RUNS_MARK_LOST,
        every=30,
        description=(
            "Marks plans and applies whose worker has been silent for "
            "TERRAFORM_LOST_AFTER_SECONDS as 'worker lost — check the state' and starts "
            "the next queued run of their workspace."
        ),
    ),
)
