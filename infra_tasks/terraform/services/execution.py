"""The worker's side of a terraform run: plan, apply, and the state lock a lost run left.

Workers are disposable: a plan packs the workspace's configuration into a bundle and stores it
with the saved plan in S3 (`remote`); the apply unpacks exactly that bundle in a fresh
directory on whichever worker takes it and applies the stored plan, both hash-checked. State
is in S3 too (terraform's s3 backend). A run whose worker stops beating is marked lost by a
periodic job (`runs.runs_mark_lost`), and the state lock it may have left is shown with a way
to release it.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infra_tasks.terraform import cli, configuration, remote, selectors, workdir
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.plan_changes import plan_changes
from infra_tasks.terraform.run_output import RunLog, RunWatch, capture_json, failure_text, stream
from infra_tasks.terraform.services.runs import run_finish, run_lock
from infra_tasks.terraform.services.steps import (
    drift_found,
    end_after_process,
    environment,
    fail,
    lock_created,
    plan_ended,
    plan_forget,
    plans_forget,
    prepare,
    source_directory,
    state_of,
    step_execute,
    summary_text,
    terraform_init,
)
from workers.errors import ApplicationError
from workers.joblog import JobLogWriter
from workers.streaming import run_streaming

STALE_PLAN_MESSAGE = (
    "The saved plan is stale: the state changed after this plan was made. "
    "Nothing was applied; queue a new plan."
)
PLAN_ALTERED_MESSAGE = "The saved plan is missing or was altered; nothing was applied. Plan again."
BUNDLE_ALTERED_MESSAGE = (
    "The configuration bundle of this plan is missing or was altered; nothing was applied. "
    "Plan again."
)
# What a force-unlock initialises: the backend alone, nothing of the configuration.
BACKEND_ONLY_CONFIGURATION = 'terraform {\n  backend "s3" {}\n}\n'


class RunStepError(ApplicationError):
    """A worker step that could not be done; the message says why (the job fails with it)."""


def run_plan_execute(
    *, run_id: int, task_id: str, worker: str, taken_over: bool = False
) -> str | None:
    """Run init and plan for a queued run; returns the run's final or waiting state."""
    return step_execute(
        run_id,
        queued=RunState.QUEUED,
        working=RunState.PLANNING,
        worker=worker,
        step=lambda run: _plan(run, task_id),
        taken_over=taken_over,
    )


def run_apply_execute(
    *, run_id: int, task_id: str, worker: str, taken_over: bool = False
) -> str | None:
    """Apply exactly the run's saved plan; returns the run's final state."""
    return step_execute(
        run_id,
        queued=RunState.APPLY_QUEUED,
        working=RunState.APPLYING,
        worker=worker,
        step=lambda run: _apply(run, task_id),
        taken_over=taken_over,
    )


def run_state_lock_check_execute(*, run_id: int, task_id: str) -> str | None:
    """Record the state lock an ended run left behind, if there is one: one that was lost,
    or whose terraform was killed or stopped by an error mid-step (failed, cancelled)."""
    run = TerraformRun.objects.filter(
        pk=run_id, state__in=(RunState.LOST, RunState.FAILED, RunState.CANCELLED)
    ).first()
    if run is None or not run.state_key or run.state_lock_checked_at is not None:
        return None
    with JobLogWriter(task_id) as log:
        lock = remote.state_lock_read(run.state_key)
        # A lock taken after the run ended belongs to whichever run holds the state now.
        if lock is not None and run.finished_at and lock_created(lock) > run.finished_at:
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
    log = RunLog(task_id)
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
            env = environment({})
            binary = settings.TERRAFORM_BIN
            for command in (
                cli.init_command(binary, backend_config=backend_file),
                cli.force_unlock_command(binary, lock_id=lock_id),
            ):
                result = run_streaming(
                    command, log=log, cwd=directory, env=env, timeout=300, grace_seconds=10
                )
                if not result.ok:
                    raise RunStepError(failure_text(f"terraform {command[1]}", log))
    with transaction.atomic():
        run = run_lock(run)
        run.state_lock = None
        run.message = f"{run.message} State lock {lock_id} released (job {task_id})."
        run.save(update_fields=["state_lock", "message"])
    return "released"


def _plan(run: TerraformRun, task_id: str) -> str | None:
    run_id = run.pk
    workspace = run.workspace
    log = RunLog(task_id)
    with log, workdir.step_directory(run_id, "plan") as step:
        remote.bucket()  # unset: the run fails with what to set before anything runs
        plans_forget(workspace)
        source = source_directory(run, log)
        if source is None:
            return state_of(run_id)
        inputs = selectors.workspace_inputs(workspace=workspace)
        prepared = prepare(run, log, inputs)
        if prepared is None:
            return state_of(run_id)
        env, deadline = prepared
        try:
            entries = configuration.collect(source)
        except configuration.ConfigurationError as exc:
            return fail(run_id, log, f"The configuration of {workspace} cannot be used: {exc}.")
        config_sha256 = configuration.digest(entries)
        backend = configuration.declared_backend(entries)
        if backend is None:
            return fail(
                run_id,
                log,
                f"The configuration of {workspace} declares no backend, so its state would "
                'stay on the worker and be lost. Add terraform { backend "s3" {} }: opsqueue '
                "supplies the bucket and key.",
            )
        state_key = remote.state_key(workspace.name) if backend == "s3" else ""
        # Recorded before terraform runs, not with the plan: a plan holds the state lock too,
        # and a worker killed mid-plan leaves it behind. The lost-run check looks for that lock
        # only on runs that name their state.
        TerraformRun.objects.filter(pk=run_id).update(state_key=state_key)
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
        watch = RunWatch(run_id)
        binary = settings.TERRAFORM_BIN
        result = terraform_init(step, directory, state_key, env, log, watch, deadline, pinned=False)
        if not result.ok:
            return end_after_process(run_id, result, "terraform init failed.")
        # The bundle is what init left to pin: the files and the provider lock file.
        bundle = configuration.pack(configuration.collect(directory))

        plan_file = step / "plan.tfplan"
        result = stream(
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
            return end_after_process(run_id, result, failure_text("terraform plan", log))

        if result.returncode == cli.PLAN_NO_CHANGES:
            plan_ended(
                run_id,
                RunState.NO_CHANGES,
                "Nothing to destroy: the workspace manages no resources."
                if run.kind == RunKind.DESTROY
                else "No changes: the infrastructure matches.",
            )
            return RunState.NO_CHANGES

        shown = capture_json(
            cli.show_plan_command(binary, plan_file=plan_file), directory, env, watch
        )
        if shown is None:
            return end_after_process(run_id, None, "terraform show could not read the saved plan.")
        summary = cli.plan_summary(shown)
        changes = plan_changes(shown, redact=log.redactor)
        log.line(f"Plan saved: {summary}.")

        if run.kind == RunKind.DRIFT_CHECK:
            drift_found(run_id, workspace_id=workspace.pk, summary=summary, changes=changes)
            return RunState.DRIFTED

        saved = plan_file.read_bytes()
        bundle_sha256 = configuration.sha256(bundle)
        bundle_key = remote.bundle_key(workspace.name, bundle_sha256)
        plan_key = remote.plan_key(workspace.name, run_id)
        remote.object_put(bundle_key, bundle)
        # Named on the run before it is stored: a worker killed between the upload and the
        # record below leaves a plan (variable values in it) that the workspace's next plan
        # removes with the other ended runs' plans, not an object nobody owns.
        TerraformRun.objects.filter(pk=run_id).update(plan_key=plan_key)
        remote.object_put(plan_key, saved)
        log.line(
            f"Plan and configuration {configuration.short(config_sha256)} stored "
            f"(plan {configuration.short(configuration.sha256(saved))})."
        )

    with transaction.atomic():
        run = run_lock(run)
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
            run_finish(run, RunState.CANCELLED, f"Cancelled by {who}.")
    if not stored:
        remote.object_delete(plan_key)
    return run.state


def _apply(run: TerraformRun, task_id: str) -> str | None:
    run_id = run.pk
    log = RunLog(task_id)
    try:
        with log, workdir.step_directory(run_id, "apply") as step:
            prepared = prepare(run, log, run.plan_inputs or {})
            if prepared is None:
                return state_of(run_id)
            env, deadline = prepared
            directory = step / "config"
            plan_file = step / "plan.tfplan"
            bundle = remote.object_get(run.bundle_key) if run.bundle_key else None
            if bundle is None or configuration.sha256(bundle) != run.bundle_sha256:
                return fail(run_id, log, BUNDLE_ALTERED_MESSAGE)
            saved = remote.object_get(run.plan_key) if run.plan_key else None
            if saved is None or configuration.sha256(saved) != run.plan_sha256:
                return fail(run_id, log, PLAN_ALTERED_MESSAGE)
            configuration.unpack(bundle, directory)
            plan_file.write_bytes(saved)
            log.line(
                f"-- {run.get_kind_display().lower()} of {run.workspace}: the saved plan of "
                f"configuration {configuration.short(run.config_sha256)} --"
            )
            watch = RunWatch(run_id)
            result = terraform_init(
                step, directory, run.state_key, env, log, watch, deadline, pinned=True
            )
            if not result.ok:
                return end_after_process(run_id, result, "terraform init failed.")

            log.progress = cli.Progress(total=sum((run.plan_summary or {}).values()) or None)
            log.set_progress(0, log.progress.total)
            binary = settings.TERRAFORM_BIN
            result = stream(
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
                    return end_after_process(run_id, result, STALE_PLAN_MESSAGE)
                return end_after_process(run_id, result, failure_text("terraform apply", log))

            outputs = capture_json(cli.output_command(binary), directory, env, watch)
            public = cli.public_outputs(outputs or {}, log.redactor)
            log.line(f"Apply complete; outputs stored: {', '.join(sorted(public)) or 'none'}.")
    finally:
        # Applied, refused or failed: this plan is spent either way.
        plan_forget(run_id)

    with transaction.atomic():
        run = run_lock(run)
        # What is deployed is now what the configuration says, or, after a destroy, nothing
        # on purpose: no drift either way.
        destroyed = timezone.now() if run.kind == RunKind.DESTROY else None
        TerraformWorkspace.objects.filter(pk=run.workspace_id).update(
            outputs=public, drifted=False, destroyed_at=destroyed
        )
        run_finish(run, RunState.APPLIED, f"Applied: {summary_text(run)}.")
    return RunState.APPLIED
