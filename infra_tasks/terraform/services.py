"""Writes for terraform workspaces and runs: requesting, approving, cancelling, executing.

Every state change of a run happens under a row lock (`select_for_update`), so a cancel and
a worker picking the run up, or two approvals, cannot interleave. The workspace row is locked
whenever the active run may change, which keeps the FIFO queue strict.

Workers are disposable: a plan packs the workspace's configuration into a bundle and stores it
with the saved plan in S3 (`remote`); the apply unpacks exactly that bundle in a fresh
directory on whichever worker takes it and applies the stored plan, both hash-checked. State
is in S3 too (terraform's s3 backend). A run whose worker stops beating is marked lost by a
periodic task, and the state lock it may have left is shown with a way to release it.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery import states
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_results.models import TaskResult

from infra_tasks.terraform import cli, configuration, remote, selectors, workdir
from infra_tasks.terraform.models import (
    ACTIVE_STATES,
    FINISHED_STATES,
    WORKING_STATES,
    RunKind,
    RunState,
    TerraformRun,
    TerraformSecret,
    TerraformWorkspace,
)
from infra_tasks.terraform.plan_changes import plan_changes
from infra_tasks.terraform.secrets import (
    TERRAFORM_VARIABLE_NAME,
    SecretUnavailable,
    secrets_resolve,
)
from workers.enqueue import Requester, job_enqueue
from workers.joblog import JobLogWriter
from workers.models import RequesterKind
from workers.redaction import default_redactor
from workers.selectors import staff_email_addresses
from workers.streaming import StopReason, StreamResult, run_streaming

logger = logging.getLogger(__name__)

DRIFT_SCHEDULE_NAME = "Terraform drift check"
LOST_RUNS_SCHEDULE_NAME = "Terraform lost runs"
WORKER_LOST = "worker lost — check the state"
STALE_PLAN_MESSAGE = (
    "The saved plan is stale: the state changed after this plan was made. "
    "Nothing was applied; queue a new plan."
)
PLAN_ALTERED_MESSAGE = "The saved plan is missing or was altered; nothing was applied. Plan again."
BUNDLE_ALTERED_MESSAGE = (
    "The configuration bundle of this plan is missing or was altered; nothing was applied. "
    "Plan again."
)
LOG_BATCH_LINES = 2000
# Environment a terraform process inherits from the worker; everything else (database URL,
# Django secret key) stays out of reach of local-exec.
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SSL_CERT_FILE")
# What a force-unlock initialises: the backend alone, nothing of the configuration.
BACKEND_ONLY_CONFIGURATION = 'terraform {\n  backend "s3" {}\n}\n'


class RunError(Exception):
    """A request that does not fit the run's current state; the message is for the admin."""


class RunStepError(Exception):
    """A worker step that could not be done; the message says why (the job fails with it)."""


# --- Requests (web process) ------------------------------------------------------------------


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
    run = TerraformRun.objects.create(
        workspace=workspace,
        kind=kind,
        state=RunState.WAITING,
        requester_kind=requester.kind,
        requester_label=requester.label,
        requested_by_id=requester.user_id,
    )
    # With the job queue down this raises, and the request rolls back as a whole.
    _queue_next(workspace, refuse_if_broker_down=True)
    run.refresh_from_db()
    return run


@transaction.atomic
def run_approve(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Approve a planned run: its saved plan is queued for apply."""
    from infra_tasks.terraform.tasks import terraform_apply

    run = _lock(run)
    if run.state != RunState.PLANNED:
        raise RunError(
            f"{run} is {run.get_state_display().lower()}; only a planned run can be approved."
        )
    if run.workspace.require_distinct_approver and run.requested_by_id == user.pk:
        raise RunError(
            f"{run.workspace} requires approval by someone other than the requester "
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
    run.apply_task_id = job_enqueue(
        terraform_apply, requester=Requester.for_user(user), args=[run.pk], audit_object=run
    )
    run.save(update_fields=["state", "approved_by", "approved_at", "apply_task_id"])
    return run


@transaction.atomic
def run_discard(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Throw a planned run's plan away; the next waiting run starts."""
    run = _lock(run)
    if run.state != RunState.PLANNED:
        raise RunError(f"{run} is {run.get_state_display().lower()}; only a plan can be discarded.")
    run.cancel_requested_by_id = user.pk
    run.cancel_requested_at = timezone.now()
    run.save(update_fields=["cancel_requested_by", "cancel_requested_at"])
    return _finish(run, RunState.DISCARDED, f"Discarded by {user.get_username()}.")


@transaction.atomic
def run_cancel(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Cancel a run. One a worker is executing is stopped by that worker (SIGINT, then
    SIGKILL after the grace period); anything else ends at once."""
    run = _lock(run)
    if run.is_finished:
        raise RunError(f"{run} has already ended ({run.get_state_display().lower()}).")
    if run.state in WORKING_STATES and _silent_seconds(run) >= _lost_after():
        # Nobody is left to see the flag: end it now rather than at the next lost-run check.
        run.cancel_requested_by_id = user.pk
        run.cancel_requested_at = timezone.now()
        return _mark_lost(run)
    if run.cancel_requested_at is not None:
        raise RunError(f"{run} is already being cancelled.")
    run.cancel_requested_by_id = user.pk
    run.cancel_requested_at = timezone.now()
    run.save(update_fields=["cancel_requested_by", "cancel_requested_at"])
    if run.state in WORKING_STATES:
        return run
    return _finish(run, RunState.CANCELLED, f"Cancelled by {user.get_username()}.")


def drift_check_request_all(*, requester: Requester) -> int:
    """Queue a drift check of every workspace that has none waiting or running."""
    queued = 0
    for workspace in TerraformWorkspace.objects.order_by("name"):
        pending = workspace.runs.filter(
            kind=RunKind.DRIFT_CHECK, state__in=(RunState.WAITING, *ACTIVE_STATES)
        ).exists()
        if not pending:
            run_request(workspace=workspace, kind=RunKind.DRIFT_CHECK, requester=requester)
            queued += 1
    return queued


def runs_mark_lost() -> int:
    """Mark every plan or apply whose worker has been silent past TERRAFORM_LOST_AFTER_SECONDS
    as lost, freeing its workspace for the next run (the periodic task's work)."""
    cutoff = timezone.now() - timedelta(seconds=_lost_after())
    silent = TerraformRun.objects.filter(state__in=WORKING_STATES).filter(
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    )
    marked = 0
    for run_id in silent.values_list("id", flat=True):
        with transaction.atomic():
            run = _lock(TerraformRun.objects.get(pk=run_id))
            # Looked at again under the lock: it may have beaten or ended since.
            if run.state in WORKING_STATES and _silent_seconds(run) >= _lost_after():
                _mark_lost(run)
                marked += 1
    return marked


@transaction.atomic
def run_state_unlock(*, run: TerraformRun, user: AbstractBaseUser | AnonymousUser) -> TerraformRun:
    """Queue the release of the state lock a lost run left behind (terraform force-unlock).

    Permission checks are the caller's (the admin); the job is audited as the user's.
    """
    from infra_tasks.terraform.tasks import terraform_state_unlock

    run = _lock(run)
    lock_id = (run.state_lock or {}).get("ID")
    if not run.is_finished or not lock_id:
        raise RunError(f"{run} has no state lock left behind to release.")
    if (
        run.unlock_task_id
        and TaskResult.objects.filter(
            task_id=run.unlock_task_id, status__in=states.UNREADY_STATES
        ).exists()
    ):
        raise RunError(f"The state lock of {run} is already being released.")
    run.unlock_task_id = job_enqueue(
        terraform_state_unlock, requester=Requester.for_user(user), args=[run.pk], audit_object=run
    )
    run.save(update_fields=["unlock_task_id"])
    return run


def _lock(run: TerraformRun) -> TerraformRun:
    # Workspace first, then run: the same order everywhere, so no deadlock.
    TerraformWorkspace.objects.select_for_update().filter(pk=run.workspace_id).first()
    return TerraformRun.objects.select_for_update().select_related("workspace").get(pk=run.pk)


def _requester_of(run: TerraformRun) -> Requester:
    return Requester(RequesterKind(run.requester_kind), run.requester_label, run.requested_by_id)


def _queue_next(workspace: TerraformWorkspace, *, refuse_if_broker_down: bool) -> None:
    """Start the oldest waiting run if the workspace has no active one. Caller holds the
    workspace lock."""
    from infra_tasks.terraform.tasks import terraform_plan

    if workspace.runs.filter(state__in=ACTIVE_STATES).exists():
        return
    run = workspace.runs.filter(state=RunState.WAITING).order_by("id").first()
    if run is None:
        return
    run.state = RunState.QUEUED
    run.plan_task_id = job_enqueue(
        terraform_plan,
        requester=_requester_of(run),
        args=[run.pk],
        audit_object=run,
        refuse_if_broker_down=refuse_if_broker_down,
    )
    run.save(update_fields=["state", "plan_task_id"])


def _finish(run: TerraformRun, state: RunState, message: str, **fields: Any) -> TerraformRun:
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


def _mark_lost(run: TerraformRun) -> TerraformRun:
    """End a run whose worker is gone, and look for the state lock it may have left.
    Caller holds the locks."""
    from infra_tasks.terraform.tasks import terraform_state_lock_check

    _finish(run, RunState.LOST, _worker_lost_message(run))
    if run.state_key:
        job_enqueue(
            terraform_state_lock_check,
            requester=Requester.system(LOST_RUNS_SCHEDULE_NAME),
            args=[run.pk],
            refuse_if_broker_down=False,
        )
    return run


# --- Execution (worker) ----------------------------------------------------------------------


def run_plan_execute(*, run_id: int, task_id: str, worker: str) -> str | None:
    """Run init and plan for a queued run; returns the run's final or waiting state."""
    run = _claim(run_id, queued=RunState.QUEUED, working=RunState.PLANNING, worker=worker)
    if run is None:
        return _state_of(run_id)
    with _failed_on_error(run_id):
        return _plan(run, task_id)
    return _state_of(run_id)


def run_apply_execute(*, run_id: int, task_id: str, worker: str) -> str | None:
    """Apply exactly the run's saved plan; returns the run's final state."""
    run = _claim(run_id, queued=RunState.APPLY_QUEUED, working=RunState.APPLYING, worker=worker)
    if run is None:
        return _state_of(run_id)
    with _failed_on_error(run_id):
        return _apply(run, task_id)
    return _state_of(run_id)


def run_state_lock_check_execute(*, run_id: int, task_id: str) -> str | None:
    """Record the state lock a lost run left behind, if there is one."""
    run = TerraformRun.objects.filter(pk=run_id, state=RunState.LOST).first()
    if run is None or not run.state_key or run.state_lock_checked_at is not None:
        return None
    with JobLogWriter(task_id) as log:
        lock = remote.state_lock_read(run.state_key)
        # A lock taken after the run ended belongs to whichever run holds the state now.
        if lock is not None and run.finished_at and _lock_created(lock) > run.finished_at:
            later = selectors.state_lock_text(lock)
            log.line(f"The state is locked by a later operation ({later}).")
            lock = None
        if lock is None:
            log.line(f"No state lock was left behind on {run.state_key}.")
        else:
            log.line(f"State lock left behind: {selectors.state_lock_text(lock)}.")
    TerraformRun.objects.filter(pk=run_id).update(
        state_lock=lock, state_lock_checked_at=timezone.now()
    )
    return "locked" if lock else "not locked"


def run_state_unlock_execute(*, run_id: int, task_id: str) -> str:
    """Release the state lock recorded on a run (terraform force-unlock by its id)."""
    run = TerraformRun.objects.select_related("workspace").get(pk=run_id)
    lock_id = (run.state_lock or {}).get("ID")
    log = _RunLog(task_id)
    with log, workdir.step_directory(run_id, "unlock") as step:
        if not lock_id or not run.state_key:
            log.line("No state lock is recorded on this run; nothing to release.")
            return "nothing to release"
        current = remote.state_lock_read(run.state_key)
        if current is None:
            log.line(f"The state lock {lock_id} is no longer there.")
        elif current.get("ID") != lock_id:
            # Someone else holds the state now: never release their lock.
            raise RunStepError(
                "The state is now locked by another operation "
                f"({selectors.state_lock_text(current)}); "
                f"lock {lock_id} is gone and nothing was released."
            )
        else:
            directory = step / "config"
            directory.mkdir()
            (directory / "main.tf").write_text(BACKEND_ONLY_CONFIGURATION)
            backend_file = step / "backend.s3.tfbackend"
            backend_file.write_text(remote.backend_config(run.state_key))
            env = _environment({})
            binary = settings.TERRAFORM_BIN
            for command in (
                cli.init_command(binary, backend_config=backend_file),
                cli.force_unlock_command(binary, lock_id=lock_id),
            ):
                result = run_streaming(
                    command, log=log, cwd=directory, env=env, timeout=300, grace_seconds=10
                )
                if not result.ok:
                    raise RunStepError(_failure_text(f"terraform {command[1]}", log))
    with transaction.atomic():
        run = _lock(run)
        run.state_lock = None
        run.message = f"{run.message} State lock {lock_id} released (job {task_id})."
        run.save(update_fields=["state_lock", "message"])
    return "released"


@contextmanager
def _failed_on_error(run_id: int) -> Iterator[None]:
    """An unexpected error (a soft time limit, a database hiccup) must not leave the run
    active: it would hold its workspace forever. The bucket being unusable, or a bundle
    that cannot be unpacked, fails the run with what went wrong."""
    try:
        yield
    except (remote.StorageError, configuration.ConfigurationError) as exc:
        _end_after_process(run_id, None, f"{exc}")
    except Exception as exc:
        _end_after_process(
            run_id, None, f"Stopped by an internal error ({exc.__class__.__name__}); see the job."
        )
        raise


def _plan(run: TerraformRun, task_id: str) -> str | None:
    run_id = run.pk
    workspace = run.workspace
    log = _RunLog(task_id)
    with log, workdir.step_directory(run_id, "plan") as step:
        remote.bucket()  # unset: the run fails with what to set before anything runs
        _plans_forget(workspace)
        source = _source_directory(run, log)
        if source is None:
            return _state_of(run_id)
        inputs = selectors.workspace_inputs(workspace=workspace)
        prepared = _prepare(run, log, inputs)
        if prepared is None:
            return _state_of(run_id)
        env, deadline = prepared
        try:
            entries = configuration.collect(source)
        except configuration.ConfigurationError as exc:
            return _fail(run_id, log, f"The configuration of {workspace} cannot be used: {exc}.")
        config_sha256 = configuration.digest(entries)
        backend = configuration.declared_backend(entries)
        if backend is None:
            return _fail(
                run_id,
                log,
                f"The configuration of {workspace} declares no backend, so its state would "
                'stay on the worker and be lost. Add terraform { backend "s3" {} }: opsqueue '
                "supplies the bucket and key.",
            )
        state_key = remote.state_key(workspace.name) if backend == "s3" else ""
        directory = step / "config"
        configuration.unpack(configuration.pack(entries), directory)
        log.line(
            f"-- {run.get_kind_display().lower()} of {workspace}: configuration "
            f"{configuration.short(config_sha256)}, "
            + (
                f"state s3://{remote.bucket()}/{state_key} --"
                if state_key
                else f'state kept by its own "{backend}" backend --'
            )
        )
        watch = _Watch(run_id)
        binary = settings.TERRAFORM_BIN
        result = _init(step, directory, state_key, env, log, watch, deadline, pinned=False)
        if not result.ok:
            return _end_after_process(run_id, result, "terraform init failed.")
        # The bundle is what init left to pin: the files and the provider lock file.
        bundle = configuration.pack(configuration.collect(directory))

        plan_file = step / "plan.tfplan"
        result = _stream(
            cli.plan_command(
                binary,
                plan_file=plan_file,
                destroy=run.kind == RunKind.DESTROY,
                lock_timeout=settings.TERRAFORM_LOCK_TIMEOUT_SECONDS,
                detailed_exitcode=True,
            ),
            log,
            directory,
            env,
            watch,
            deadline,
        )
        if result.stopped is not None or result.returncode not in (
            cli.PLAN_NO_CHANGES,
            cli.PLAN_HAS_CHANGES,
        ):
            return _end_after_process(run_id, result, _failure_text("terraform plan", log))

        if result.returncode == cli.PLAN_NO_CHANGES:
            _plan_ended(run_id, RunState.NO_CHANGES, "No changes: the infrastructure matches.")
            return RunState.NO_CHANGES

        shown = _capture(cli.show_plan_command(binary, plan_file=plan_file), directory, env, watch)
        if shown is None:
            return _end_after_process(run_id, None, "terraform show could not read the saved plan.")
        summary = cli.plan_summary(shown)
        changes = plan_changes(shown, redact=log.redactor)
        log.line(f"Plan saved: {summary}.")

        if run.kind == RunKind.DRIFT_CHECK:
            _drift_found(run_id, workspace_id=workspace.pk, summary=summary, changes=changes)
            return RunState.DRIFTED

        saved = plan_file.read_bytes()
        bundle_sha256 = configuration.sha256(bundle)
        bundle_key = remote.bundle_key(workspace.name, bundle_sha256)
        plan_key = remote.plan_key(workspace.name, run_id)
        remote.object_put(bundle_key, bundle)
        remote.object_put(plan_key, saved)
        log.line(
            f"Plan and configuration {configuration.short(config_sha256)} stored "
            f"(plan {configuration.short(configuration.sha256(saved))})."
        )

    with transaction.atomic():
        run = _lock(run)
        if run.state != RunState.PLANNING or run.cancel_requested_at is not None:
            stored = False
        else:
            stored = True
            run.state = RunState.PLANNED
            run.plan_key = plan_key
            run.plan_sha256 = configuration.sha256(saved)
            run.plan_summary = summary.as_dict()
            run.plan_changes = changes
            run.config_sha256 = config_sha256
            run.bundle_key = bundle_key
            run.bundle_sha256 = bundle_sha256
            run.plan_inputs = inputs
            run.state_key = state_key
            run.message = f"Plan: {summary}. Waiting for approval."
            run.heartbeat_at = timezone.now()
            run.save()
        if not stored and run.state == RunState.PLANNING:
            # Asked to stop just as terraform finished: the plan is not offered for approval.
            who = run.cancel_requested_by.get_username() if run.cancel_requested_by else "someone"
            _finish(run, RunState.CANCELLED, f"Cancelled by {who}.")
    if not stored:
        remote.object_delete(plan_key)
    return run.state


def _apply(run: TerraformRun, task_id: str) -> str | None:
    run_id = run.pk
    log = _RunLog(task_id)
    try:
        with log, workdir.step_directory(run_id, "apply") as step:
            prepared = _prepare(run, log, run.plan_inputs or {})
            if prepared is None:
                return _state_of(run_id)
            env, deadline = prepared
            directory = step / "config"
            plan_file = step / "plan.tfplan"
            bundle = remote.object_get(run.bundle_key) if run.bundle_key else None
            if bundle is None or configuration.sha256(bundle) != run.bundle_sha256:
                return _fail(run_id, log, BUNDLE_ALTERED_MESSAGE)
            saved = remote.object_get(run.plan_key) if run.plan_key else None
            if saved is None or configuration.sha256(saved) != run.plan_sha256:
                return _fail(run_id, log, PLAN_ALTERED_MESSAGE)
            configuration.unpack(bundle, directory)
            plan_file.write_bytes(saved)
            log.line(
                f"-- {run.get_kind_display().lower()} of {run.workspace}: the saved plan of "
                f"configuration {configuration.short(run.config_sha256)} --"
            )
            watch = _Watch(run_id)
            result = _init(step, directory, run.state_key, env, log, watch, deadline, pinned=True)
            if not result.ok:
                return _end_after_process(run_id, result, "terraform init failed.")

            log.progress = cli.Progress(total=sum((run.plan_summary or {}).values()) or None)
            log.set_progress(0, log.progress.total)
            binary = settings.TERRAFORM_BIN
            result = _stream(
                cli.apply_command(
                    binary,
                    plan_file=plan_file,
                    lock_timeout=settings.TERRAFORM_LOCK_TIMEOUT_SECONDS,
                ),
                log,
                directory,
                env,
                watch,
                deadline,
            )
            if not result.ok:
                if log.saw(cli.STALE_PLAN):
                    return _end_after_process(run_id, result, STALE_PLAN_MESSAGE)
                return _end_after_process(run_id, result, _failure_text("terraform apply", log))

            outputs = _capture(cli.output_command(binary), directory, env, watch)
            public = cli.public_outputs(outputs or {}, log.redactor)
            log.line(f"Apply complete; outputs stored: {', '.join(sorted(public)) or 'none'}.")
    finally:
        # Applied, refused or failed: this plan is spent either way.
        _plan_forget(run_id)

    with transaction.atomic():
        run = _lock(run)
        # What is deployed is now what the configuration says: no drift.
        TerraformWorkspace.objects.filter(pk=run.workspace_id).update(outputs=public, drifted=False)
        _finish(run, RunState.APPLIED, f"Applied: {_summary_text(run)}.")
    return RunState.APPLIED


def _init(
    step: Path,
    directory: Path,
    state_key: str,
    env: dict[str, str],
    log: _RunLog,
    watch: _Watch,
    deadline: float,
    *,
    pinned: bool,
) -> StreamResult:
    """`terraform init` in a step's directory: opsqueue's backend settings when the
    configuration uses its s3 backend; `pinned` keeps providers to the bundle's lock file."""
    backend_file = None
    if state_key:
        backend_file = step / "backend.s3.tfbackend"
        backend_file.write_text(remote.backend_config(state_key))
    command = cli.init_command(
        settings.TERRAFORM_BIN,
        backend_config=backend_file,
        lockfile_readonly=pinned and (directory / configuration.LOCK_FILE).exists(),
    )
    with workdir.plugin_cache_lock(watch):
        return _stream(command, log, directory, env, watch, deadline)


def _plans_forget(workspace: TerraformWorkspace) -> None:
    """Remove the stored plans of the workspace's ended runs (discarded, cancelled, ...)."""
    ended = workspace.runs.filter(state__in=FINISHED_STATES).exclude(plan_key="")
    for run_id in ended.values_list("id", flat=True):
        _plan_forget(run_id)


def _plan_forget(run_id: int) -> None:
    key = TerraformRun.objects.filter(pk=run_id).values_list("plan_key", flat=True).first()
    if key:
        remote.object_delete(key)
        TerraformRun.objects.filter(pk=run_id, plan_key=key).update(plan_key="")


def _fail(run_id: int, log: JobLogWriter, message: str) -> str:
    log.line(message)
    return _end_after_process(run_id, None, message)


def _claim(run_id: int, *, queued: RunState, working: RunState, worker: str) -> TerraformRun | None:
    """Take the run for this worker, or return None if there is nothing (more) to do.

    A run already in `working` means the message came again: it is dropped. If its worker
    has been silent past the limit, the run is marked lost now, rather than at the next
    lost-run check; terraform may have stopped half-way, so it is never started again.
    """
    with transaction.atomic():
        found = TerraformRun.objects.filter(pk=run_id).first()
        if found is None:
            return None
        run = _lock(found)
        if run.state == queued:
            now = timezone.now()
            run.state = working
            run.worker = worker
            run.heartbeat_at = now
            run.started_at = run.started_at or now
            run.save(update_fields=["state", "worker", "heartbeat_at", "started_at"])
            return TerraformRun.objects.select_related("workspace").get(pk=run_id)
        if run.state == working and _silent_seconds(run) >= _lost_after():
            _mark_lost(run)
        return None


def _lost_after() -> float:
    """Seconds without a heartbeat after which a run's worker is taken for gone."""
    return float(settings.TERRAFORM_LOST_AFTER_SECONDS)


def _silent_seconds(run: TerraformRun) -> float:
    if run.heartbeat_at is None:
        return float("inf")
    return (timezone.now() - run.heartbeat_at).total_seconds()


def _worker_lost_message(run: TerraformRun) -> str:
    return (
        f"{run.get_state_display()} on {run.worker or 'a worker'} stopped: {WORKER_LOST}. "
        "Terraform may have been interrupted mid-way; plan again to see what is left."
    )


def _lock_created(lock: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(lock.get("Created", "")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def _source_directory(run: TerraformRun, log: JobLogWriter) -> Path | None:
    """The workspace's configuration directory on this worker, or None after failing the run."""
    workspace = run.workspace
    try:
        directory = cli.workspace_dir(Path(settings.TERRAFORM_ROOT), workspace.directory)
    except cli.WorkspacePathError as exc:
        _end_after_process(run.pk, None, f"Refused: {exc}.")
        return None
    if not directory.is_dir():
        _fail(
            run.pk,
            log,
            f"{workspace.directory!r} does not exist under TERRAFORM_ROOT on this worker.",
        )
        return None
    return directory


def _prepare(
    run: TerraformRun, log: _RunLog, inputs: dict[str, Any]
) -> tuple[dict[str, str], float] | None:
    """Environment with the variables and resolved secrets of `inputs`, and the deadline;
    or None after failing the run."""
    workspace = run.workspace
    # The forms refuse such names; rows saved before they did are refused here, by name.
    names = [*(inputs.get("variables") or {}), *(inputs.get("secrets") or {})]
    bad = [name for name in names if not TERRAFORM_VARIABLE_NAME.fullmatch(str(name))]
    if bad:
        _fail(run.pk, log, f"Not terraform variable names: {', '.join(map(repr, bad))}.")
        return None
    references = [
        TerraformSecret(workspace=workspace, variable=variable, **reference)
        for variable, reference in (inputs.get("secrets") or {}).items()
    ]
    try:
        secrets = secrets_resolve(references)
    except SecretUnavailable as exc:
        _fail(run.pk, log, f"Secret unavailable: {exc}")
        return None
    log.redactor = log.redactor.with_secrets(secrets.values())
    env = _environment(cli.variables_environment(inputs.get("variables") or {}, secrets))
    limit = workspace.run_time_limit_seconds or settings.TERRAFORM_RUN_TIME_LIMIT_SECONDS
    return env, time.monotonic() + limit


def _environment(variables: dict[str, str]) -> dict[str, str]:
    env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    env.update(
        (name, value)
        for name, value in os.environ.items()
        if name.startswith(("AWS_", "TF_")) and not name.startswith("TF_VAR_")
    )
    env.update(variables)
    env.update(
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        TF_PLUGIN_CACHE_DIR=str(workdir.plugin_cache_directory()),
    )
    return env


class _RunLog(JobLogWriter):
    """The job log of a terraform step: `-json` events are stored as their messages and
    counted for progress; plain lines pass through. Secrets are added once resolved."""

    def __init__(self, task_id: str) -> None:
        self.redactor = default_redactor()
        # Terraform can print thousands of lines a second; it blocks on a full pipe while
        # a batch is being inserted, so batches are larger than the default. The time-based
        # flush still makes every line readable within a fraction of a second.
        super().__init__(
            task_id, redact=lambda line: self.redactor(line), flush_lines=LOG_BATCH_LINES
        )
        self.progress: cli.Progress | None = None
        self._tail: list[str] = []
        # Lines are handed to the writer a read's worth at a time (run_streaming calls
        # flush_if_due after each read), not one call per line.
        self._pending: list[str] = []

    def line(self, text: str) -> None:
        event = cli.parse_event(text)
        if event is not None:
            if self.progress is not None and self.progress.feed(event):
                self.set_progress(self.progress.done, self.progress.total)
            if event.type == "version":
                return
            text = cli.event_text(event)
            if event.data.get("@level") == "error":
                self._tail = [*self._tail[-4:], self.redactor(text)]
        self._pending.append(text)

    def write_lines(self, lines: list[str]) -> None:
        pending = self._pending
        for text in lines:
            message = cli.plain_event_message(text) if text.startswith("{") else text
            if message is None:
                self.line(text)  # an event the summary or the progress count needs
            else:
                pending.append(message)

    def _hand_over(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            super().write("\n".join(pending) + "\n")

    def flush_if_due(self) -> None:
        self._hand_over()
        super().flush_if_due()

    def flush(self, *, final: bool = False) -> None:
        self._hand_over()
        super().flush(final=final)

    def saw(self, needle: str) -> bool:
        return any(needle in text for text in self._tail)

    @property
    def errors(self) -> list[str]:
        return list(self._tail)


class _Capture(JobLogWriter):
    """Collects a command's output instead of logging it: `show -json` and `output -json`
    print variable and output values, sensitive ones included, that have no place in a log."""

    def __init__(self) -> None:
        super().__init__("", redact=str)
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush_if_due(self) -> None:
        return None

    def flush(self, *, final: bool = False) -> None:
        return None


class _Watch:
    """`should_stop` for run_streaming: beats the run's heartbeat and reads its cancel flag."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._last_beat = time.monotonic()

    def __call__(self) -> bool:
        now = time.monotonic()
        if now - self._last_beat >= settings.TERRAFORM_HEARTBEAT_SECONDS:
            TerraformRun.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
            self._last_beat = now
        return TerraformRun.objects.filter(
            pk=self.run_id, cancel_requested_at__isnull=False
        ).exists()


def _stream(
    command: list[str],
    log: JobLogWriter,
    directory: Path,
    env: dict[str, str],
    watch: _Watch,
    deadline: float,
) -> StreamResult:
    return run_streaming(
        command,
        log=log,
        cwd=directory,
        env=env,
        should_stop=watch,
        timeout=max(deadline - time.monotonic(), 0.1),
        grace_seconds=settings.TERRAFORM_CANCEL_GRACE_SECONDS,
    )


def _capture(
    command: list[str], directory: Path, env: dict[str, str], watch: _Watch
) -> dict[str, Any] | None:
    sink = _Capture()
    result = run_streaming(
        command,
        log=sink,
        cwd=directory,
        env=env,
        should_stop=watch,
        timeout=120,
        grace_seconds=settings.TERRAFORM_CANCEL_GRACE_SECONDS,
    )
    if not result.ok:
        return None
    # The JSON document (one line for `show`, indented for `output`) after any warnings.
    starts = [i for i, line in enumerate(sink.lines) if line.startswith("{")]
    if not starts:
        return None
    try:
        parsed, _end = json.JSONDecoder().raw_decode("\n".join(sink.lines[starts[0] :]))
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _failure_text(step: str, log: _RunLog) -> str:
    errors = log.errors
    return f"{step} failed: {errors[-1]}" if errors else f"{step} failed; see the log."


def _end_after_process(run_id: int, result: StreamResult | None, failure: str) -> str:
    """End a run after a terraform process stopped or failed."""
    with transaction.atomic():
        run = TerraformRun.objects.select_related("workspace").get(pk=run_id)
        run = _lock(run)
        if run.is_finished:
            return run.state
        if result is not None and result.stopped == StopReason.CANCELLED:
            who = run.cancel_requested_by.get_username() if run.cancel_requested_by else "someone"
            _finish(run, RunState.CANCELLED, f"Cancelled by {who}; terraform was interrupted.")
        elif result is not None and result.stopped == StopReason.TIMED_OUT:
            limit = (
                run.workspace.run_time_limit_seconds or settings.TERRAFORM_RUN_TIME_LIMIT_SECONDS
            )
            _finish(
                run, RunState.FAILED, f"Time limit of {limit} s reached; terraform was stopped."
            )
        else:
            _finish(run, RunState.FAILED, failure)
        return run.state


def _plan_ended(run_id: int, state: RunState, message: str) -> None:
    with transaction.atomic():
        run = _lock(TerraformRun.objects.get(pk=run_id))
        if run.state != RunState.PLANNING:
            return
        if run.kind != RunKind.DESTROY:
            TerraformWorkspace.objects.filter(pk=run.workspace_id).update(
                drifted=False, drift_checked_at=timezone.now()
            )
        _finish(run, state, message, plan_summary={"add": 0, "change": 0, "destroy": 0})


def _drift_found(
    run_id: int, *, workspace_id: int, summary: cli.PlanSummary, changes: dict[str, Any]
) -> None:
    with transaction.atomic():
        run = _lock(TerraformRun.objects.get(pk=run_id))
        if run.state != RunState.PLANNING:
            return
        workspace = run.workspace
        newly = not workspace.drifted
        TerraformWorkspace.objects.filter(pk=workspace_id).update(
            drifted=True, drift_checked_at=timezone.now()
        )
        _finish(
            run,
            RunState.DRIFTED,
            f"Drift: {summary}.",
            plan_summary=summary.as_dict(),
            plan_changes=changes,
        )
        if newly:
            transaction.on_commit(lambda: _drift_notify(workspace, summary))


def _drift_notify(workspace: TerraformWorkspace, summary: cli.PlanSummary) -> None:
    recipients = [u.email for u in workspace.notify.filter(is_active=True) if u.email]
    if not recipients:
        recipients = staff_email_addresses()
    if not recipients:
        logger.warning("drift in %s but no staff e-mail address to tell", workspace)
        return
    send_mail(
        subject=f"[opsqueue] Terraform drift in {workspace}",
        message=(
            f"A scheduled plan of workspace {workspace} ({workspace.directory}) found changes "
            f"made outside opsqueue: {summary}.\n\nReview it in the admin and queue a plan to "
            "bring the infrastructure back to its configuration."
        ),
        from_email=None,
        recipient_list=recipients,
    )


def _summary_text(run: TerraformRun) -> str:
    summary = run.plan_summary or {}
    return (
        f"{summary.get('add', 0)} added, {summary.get('change', 0)} changed, "
        f"{summary.get('destroy', 0)} destroyed"
    )


def _state_of(run_id: int) -> str | None:
    return TerraformRun.objects.filter(pk=run_id).values_list("state", flat=True).first()
