"""Writes for terraform workspaces and runs.

- `runs`: what a person (or a schedule) asks for — request, approve, discard, cancel,
  force-unlock, drift checks — and the workspace's FIFO queue of runs;
- `execution`: what a worker does with a run — plan, apply, the state lock a lost run left;
- `steps`: what those worker steps share (claiming a run, its environment, ending it);
- `notifications`: e-mail, sent after the change it reports is committed.

The public names are re-exported here; code in this app imports the submodules.
"""

from infra_tasks.terraform.services.execution import (
    BUNDLE_ALTERED_MESSAGE,
    PLAN_ALTERED_MESSAGE,
    STALE_PLAN_MESSAGE,
    RunStepError,
    run_apply_execute,
    run_plan_execute,
    run_state_lock_check_execute,
    run_state_unlock_execute,
)
from infra_tasks.terraform.services.runs import (
    WORKER_LOST,
    RunError,
    drift_check_request_all,
    run_approve,
    run_cancel,
    run_discard,
    run_request,
    run_state_unlock,
    runs_mark_lost,
    workspace_directory_validate,
)

__all__ = [
    "BUNDLE_ALTERED_MESSAGE",
    "PLAN_ALTERED_MESSAGE",
    "STALE_PLAN_MESSAGE",
    "WORKER_LOST",
    "RunError",
    "RunStepError",
    "drift_check_request_all",
    "run_apply_execute",
    "run_approve",
    "run_cancel",
    "run_discard",
    "run_plan_execute",
    "run_request",
    "run_state_lock_check_execute",
    "run_state_unlock",
    "run_state_unlock_execute",
    "runs_mark_lost",
    "workspace_directory_validate",
]
