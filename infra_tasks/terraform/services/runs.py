"""Requests for terraform runs (web process) and the workspace's queue of runs.

Every state change of a run happens under a row lock (`run_lock`), so a cancel and a worker
picking the run up, or two approvals, cannot interleave. The workspace row is locked whenever
the active run may change, which keeps the FIFO queue strict: `run_finish` ends a run and
starts the next waiting one. Permission checks are the caller's (the admin).
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from infra_tasks.terraform import cli, jobs, selectors
from infra_tasks.terraform.models import (
    ACTIVE_STATES,
    WORKING_STATES,
    RunKind,
    RunState,
    TerraformRun,
    TerraformWorkspace,
)
from workers.enqueue import Requester, job_enqueue
from workers.errors import ApplicationError
from workers.logsink import LogSink
from workers.queues import QUEUES

WORKER_LOST = "worker lost — check the state"


class RunError(ApplicationError):
    """A request that does not fit the run's current state; the message is for the admin."""


def workspace_directory_validate(*, directory: str) -> Path:
    try:
        return cli.workspace_dir(Path(settings.TERRAFORM_ROOT), directory)
    except cli.WorkspacePathError as exc:
        raise RunError(str(exc)) from None


@transaction.atomic
def run_request(
    *,
    workspace: TerraformWorkspace,
    kind: RunKind,
    requester: Requester,
) -> TerraformRun:
    """Queue a plan (of kind apply, destroy or drift check); it waits if another run is active.

    Permission checks are the caller's (the admin); this checks the workspace itself.
    """
    workspace = TerraformWorkspace.objects.select_for_update().get(pk=workspace.pk)
    workspace_directory_validate(directory=workspace.directory)
    if kind == RunKind.DRIFT_CHECK and workspace.destroyed_at is not None:
        raise RunError(destroyed_no_drift_check(workspace))
    run = TerraformRun.objects.create(
        workspace=workspace,
        kind=kind,
        state=RunState.WAITING,
        **requester.as_fields(),
    )
    # With the job queue down this raises, and the request rolls back as a whole.
    _queue_next(workspace, refuse_if_broker_down=True)
    run.refresh_from_db()
    return run


@transaction.atomic
def run_approve(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Approve a planned run: its saved plan is queued for apply."""
    run = run_lock(run)
    if run.state != RunState.PLANNED:
        raise RunError(
            f"Run {run} is {run.get_state_display().lower()}; only a planned run can be approved."
        )
    if run.workspace.require_distinct_approver and run.requested_by_id == user.pk:
        raise RunError(
            f"Workspace {run.workspace} requires approval by someone other than the requester "
            f"({run.requester_label})."
        )
    outdated = selectors.run_plan_outdated(run=run)
    if outdated:
        raise RunError(
            f"{outdated} Approving it needs a fresh plan: discard this one and plan again."
        )
    run.state = RunState.APPLY_QUEUED
    run.approved_by_id = user.pk
    run.approved_at = timezone.now()
    # No longer "waiting for approval": the run's pages and its apply job say who approved it.
    summary = cli.PlanSummary(**(run.plan_summary or {"add": 0, "change": 0, "destroy": 0}))
    run.message = f"Plan: {summary}. Approved by {user.get_username()}; applying."
    run.apply_task_id = job_enqueue(
        jobs.RUN_APPLY_EXECUTE, requester=Requester.for_user(user), args=[run.pk], audit_object=run
    )
    run.save(update_fields=["state", "approved_by", "approved_at", "message", "apply_task_id"])
    return run


@transaction.atomic
def run_discard(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Throw a planned run's plan away; the next waiting run starts."""
    run = run_lock(run)
    if run.state != RunState.PLANNED:
        raise RunError(
            f"Run {run} is {run.get_state_display().lower()}; only a plan can be discarded."
        )
    run.cancel_requested_by_id = user.pk
    run.cancel_requested_at = timezone.now()
    run.save(update_fields=["cancel_requested_by", "cancel_requested_at"])
    return run_finish(run, RunState.DISCARDED, f"Discarded by {user.get_username()}.")


@transaction.atomic
def run_cancel(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Cancel a run. One a worker is executing is stopped by that worker (SIGINT, then
    SIGKILL after the grace period); anything else ends at once."""
    run = run_lock(run)
    if run.is_finished:
        raise RunError(f"Run {run} has already ended ({run.get_state_display().lower()}).")
    if run.state in WORKING_STATES and silent_seconds(run) >= lost_after():
        # Nobody is left to see the flag: end it now rather than at the next lost-run check.
        run.cancel_requested_by_id = user.pk
        run.cancel_requested_at = timezone.now()
        return run_mark_lost(run)
    if run.cancel_requested_at is not None:
        raise RunError(f"Run {run} is already being cancelled.")
    run.cancel_requested_by_id = user.pk
    run.cancel_requested_at = timezone.now()
    run.save(update_fields=["cancel_requested_by", "cancel_requested_at"])
    if run.state in WORKING_STATES:
        return run
    return run_finish(run, RunState.CANCELLED, f"Cancelled by {user.get_username()}.")


def destroyed_no_drift_check(workspace: TerraformWorkspace) -> str:
    assert workspace.destroyed_at is not None
    when = timezone.localtime(workspace.destroyed_at).strftime("%Y-%m-%d %H:%M")
    return (
        f"Workspace {workspace} was destroyed on purpose ({when}): it manages nothing, so a "
        "drift check would only report that everything is missing. It is not checked for "
        "drift until a plan brings it back and is applied."
    )


def drift_check_request_all(*, requester: Requester, log: LogSink | None = None) -> int:
    """Queue a drift check of every workspace that has none waiting or running, but those
    destroyed on purpose (checked again once an apply brings them back). Each workspace
    gets a line in `log`: its job read only "0" when every workspace was left out."""
    say = log.line if log is not None else (lambda text: None)
    queued = 0
    for workspace in TerraformWorkspace.objects.order_by("name"):
        if workspace.destroyed_at is not None:
            say(f"{workspace}: not checked. {destroyed_no_drift_check(workspace)}")
            continue
        pending = workspace.runs.filter(
            kind=RunKind.DRIFT_CHECK, state__in=(RunState.WAITING, *ACTIVE_STATES)
        ).first()
        if pending is not None:
            say(
                f"{workspace}: not queued again, its drift check run #{pending.pk} is not "
                f"done ({pending.get_state_display()})"
            )
            continue
        run = run_request(workspace=workspace, kind=RunKind.DRIFT_CHECK, requester=requester)
        say(f"{workspace}: drift check queued (run #{run.pk})")
        queued += 1
    if not queued:
        say("No drift check was queued.")
    return queued


def runs_mark_lost() -> int:
    """Mark every plan or apply whose worker has been silent past TERRAFORM_LOST_AFTER_SECONDS
    as lost, freeing its workspace for the next run (the periodic task's work)."""
    cutoff = timezone.now() - timedelta(seconds=lost_after())
    silent = TerraformRun.objects.filter(state__in=WORKING_STATES).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    marked = 0
    for run_id in silent.values_list("id", flat=True):
        with transaction.atomic():
            run = run_lock(TerraformRun.objects.get(pk=run_id))
            # Looked at again under the lock: it may have beaten or ended since.
            if run.state in WORKING_STATES and silent_seconds(run) >= lost_after():
                run_mark_lost(run)
                marked += 1
    return marked


@transaction.atomic
def run_state_unlock(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Queue the release of the state lock a lost run left behind (terraform force-unlock).

    Permission checks are the caller's (the admin); the job is audited as the user's.
    """
    run = run_lock(run)
    lock_id = (run.state_lock or {}).get("ID")
    if not run.is_finished or not lock_id:
        raise RunError(f"Run {run} has no state lock left behind to release.")
    if selectors.run_unlock_in_progress(run=run):
        raise RunError(f"The state lock of {run} is already being released.")
    run.unlock_task_id = job_enqueue(
        jobs.RUN_STATE_UNLOCK_EXECUTE,
        requester=Requester.for_user(user),
        args=[run.pk],
        audit_object=run,
    )
    run.save(update_fields=["unlock_task_id"])
    return run


# --- The queue: what every state change of a run goes through (web and worker) -------------


def run_lock(run: TerraformRun) -> TerraformRun:
    """The run, locked with its workspace (call inside a transaction)."""
    # Workspace first, then run: the same order everywhere, so no deadlock.
    TerraformWorkspace.objects.select_for_update().filter(pk=run.workspace_id).first()
    return TerraformRun.objects.select_for_update().select_related("workspace").get(pk=run.pk)


def run_finish(run: TerraformRun, state: RunState, message: str, **fields: Any) -> TerraformRun:
    """End a run and start the next waiting one. Caller holds the locks."""
    run.state = state
    run.message = message
    run.finished_at = timezone.now()
    for name, value in fields.items():
        setattr(run, name, value)
    run.save()
    # Its stored plan, if any, is removed by the next worker step of the workspace (the web
    # process has no access to the bucket).
    # The run's end must be recorded whatever the broker's state: the next run is sent once
    # the broker is back (outbox relay, sweeper).
    _queue_next(run.workspace, refuse_if_broker_down=False)
    return run


def run_mark_lost(run: TerraformRun) -> TerraformRun:
    """End a run whose worker is gone, and look for the state lock it may have left.
    Caller holds the locks."""
    run_finish(run, RunState.LOST, _worker_lost_message(run))
    run_state_lock_check_request(run, requester=Requester.system(jobs.LOST_RUNS_SCHEDULE_NAME))
    return run


@transaction.atomic
def run_job_ended_unstarted(*, task_id: str, reason: str) -> TerraformRun | None:
    """End a run whose plan or apply job ended before any worker started it (its message
    lost with its SQS queue, or discarded from the dead-letter queue). No heartbeat check
    sees such a run, and it read "Queued" for good, holding its workspace: every later
    plan and drift check waited behind it."""
    run = (
        TerraformRun.objects.filter(state=RunState.QUEUED, plan_task_id=task_id)
        | TerraformRun.objects.filter(state=RunState.APPLY_QUEUED, apply_task_id=task_id)
    ).first()
    if run is None:
        return None
    run = run_lock(run)
    if run.state not in (RunState.QUEUED, RunState.APPLY_QUEUED):
        return None  # a worker started it meanwhile: its own step ends it
    step = "plan" if run.state == RunState.QUEUED else "apply"
    # Its saved plan, if any, is removed by the workspace's next plan (run_finish).
    return run_finish(
        run, RunState.FAILED, f"Its {step} job never started: {reason}. Nothing ran; plan again."
    )


def run_state_lock_check_request(run: TerraformRun, *, requester: Requester) -> None:
    """Look for the state lock an ended run's terraform may have left (it was lost, killed,
    or its step stopped by an error), so that its page shows it and offers its release."""
    if run.state_key:
        job_enqueue(
            jobs.RUN_STATE_LOCK_CHECK_EXECUTE,
            requester=requester,
            args=[run.pk],
            refuse_if_broker_down=False,
        )


# What a step does around terraform within its worker's soft time limit besides the run's
# own limit and the cancel grace: unpacking its bundle, storing its plan or state notes.
STEP_MARGIN_SECONDS = 120


def run_time_limit_max() -> int:
    """The longest a plan or apply may run: its step must end within the infra queue's soft
    time limit, terraform's cancel grace and the step's own work included. A longer limit
    was met by the soft limit first, which stopped terraform as an error does, and read
    "internal error" instead of "time limit reached"."""
    soft = QUEUES[jobs.INFRA].soft_time_limit
    return max(int(soft - settings.TERRAFORM_CANCEL_GRACE_SECONDS - STEP_MARGIN_SECONDS), 1)


def run_time_limit(workspace: TerraformWorkspace) -> int:
    """The seconds a plan or apply of `workspace` may run: its own limit or the default,
    within run_time_limit_max()."""
    limit = workspace.run_time_limit_seconds or settings.TERRAFORM_RUN_TIME_LIMIT_SECONDS
    return min(limit, run_time_limit_max())


def lost_after() -> float:
    """Seconds without a heartbeat after which a run's worker is taken for gone."""
    return float(settings.TERRAFORM_LOST_AFTER_SECONDS)


def silent_seconds(run: TerraformRun) -> float:
    if run.heartbeat_at is None:
        return float("inf")
    return (timezone.now() - run.heartbeat_at).total_seconds()


def _queue_next(workspace: TerraformWorkspace, *, refuse_if_broker_down: bool) -> None:
    """Start the oldest waiting run if the workspace has no active one. Caller holds the
    workspace lock."""
    if workspace.runs.filter(state__in=ACTIVE_STATES).exists():
        return
    run = workspace.runs.filter(state=RunState.WAITING).order_by("id").first()
    if run is None:
        return
    run.state = RunState.QUEUED
    run.plan_task_id = job_enqueue(
        jobs.RUN_PLAN_EXECUTE,
        requester=Requester.of(run),
        args=[run.pk],
        audit_object=run,
        refuse_if_broker_down=refuse_if_broker_down,
    )
    run.save(update_fields=["state", "plan_task_id"])


def _worker_lost_message(run: TerraformRun) -> str:
    return (
        f"{run.get_state_display()} on {run.worker or 'a worker'} stopped: {WORKER_LOST}. "
        "Terraform may have been interrupted mid-way; plan again to see what is left."
    )
