"""What every worker step of a run shares: claiming the run, preparing terraform's directory
and environment, and ending the run however the step went.

The steps themselves are in `execution`; the run's state changes go through `runs`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infra_tasks.terraform import cli, configuration, remote, workdir
from infra_tasks.terraform.models import (
    FINISHED_STATES,
    RunKind,
    RunState,
    TerraformRun,
    TerraformSecret,
    TerraformWorkspace,
)
from infra_tasks.terraform.run_output import RunLog, RunWatch, stream
from infra_tasks.terraform.secrets import (
    TERRAFORM_VARIABLE_NAME,
    SecretUnavailable,
    secrets_resolve,
)
from infra_tasks.terraform.services.notifications import drift_notify_on_commit
from infra_tasks.terraform.services.runs import (
    lost_after,
    run_finish,
    run_lock,
    run_mark_lost,
    run_state_lock_check_request,
    run_time_limit,
    silent_seconds,
)
from workers.enqueue import Requester
from workers.logsink import LogSink
from workers.streaming import StopReason, StreamResult

# Environment a terraform process inherits from the worker; everything else (database URL,
# Django secret key) stays out of reach of local-exec.
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SSL_CERT_FILE")


def run_claim(
    run_id: int, *, queued: RunState, working: RunState, worker: str, taken_over: bool = False
) -> TerraformRun | None:
    """Take the run for this worker, or return None if there is nothing (more) to do.

    A run already in `working` means the message came again: it is dropped. If its worker
    has been silent past the limit, or this delivery took the job over from a process that
    died running it (`taken_over`, workers/claims.py: its process seen gone, or its claim
    found lapsed when SQS delivered its message again), the run is marked lost now, rather
    than at the next lost-run check; terraform may have stopped half-way, so it is never
    started again.
    """
    with transaction.atomic():
        found = TerraformRun.objects.filter(pk=run_id).first()
        if found is None:
            return None
        run = run_lock(found)
        if run.state == queued:
            now = timezone.now()
            run.state = working
            run.worker = worker
            run.heartbeat_at = now
            run.started_at = run.started_at or now
            run.save(update_fields=["state", "worker", "heartbeat_at", "started_at"])
            return TerraformRun.objects.select_related("workspace").get(pk=run_id)
        if run.state == working and (taken_over or silent_seconds(run) >= lost_after()):
            run_mark_lost(run)
        return None


def step_execute(
    run_id: int,
    *,
    queued: RunState,
    working: RunState,
    worker: str,
    step: Callable[[TerraformRun], str | None],
    taken_over: bool = False,
) -> str | None:
    """Claim the run for this worker and do `step` on it; return the run's state. A run
    not claimed (gone, already taken, a repeated message) is left as it is."""
    run = run_claim(run_id, queued=queued, working=working, worker=worker, taken_over=taken_over)
    if run is None:
        return state_of(run_id)
    with failed_on_error(run_id):
        return step(run)
    return state_of(run_id)


@contextmanager
def failed_on_error(run_id: int) -> Iterator[None]:
    """An unexpected error (a soft time limit, a database hiccup) must not leave the run
    active: it would hold its workspace forever. The bucket being unusable, or a bundle
    that cannot be unpacked, fails the run with what went wrong."""
    try:
        yield
    except (remote.StorageError, configuration.ConfigurationError) as exc:
        end_after_process(run_id, None, f"{exc}")
    except Exception as exc:
        end_after_process(
            run_id,
            None,
            f"Stopped by an internal error ({exc.__class__.__name__}); see the job.",
            lock_may_be_left=True,
        )
        raise


def source_directory(run: TerraformRun, log: LogSink) -> Path | None:
    """The workspace's configuration directory on this worker, or None after failing the run."""
    workspace = run.workspace
    try:
        directory = cli.workspace_dir(Path(settings.TERRAFORM_ROOT), workspace.directory)
    except cli.WorkspacePathError as exc:
        end_after_process(run.pk, None, f"Refused: {exc}.")
        return None
    if not directory.is_dir():
        fail(
            run.pk,
            log,
            f"{workspace.directory!r} does not exist under TERRAFORM_ROOT on this worker.",
        )
        return None
    return directory


def prepare(
    run: TerraformRun, log: RunLog, inputs: dict[str, Any]
) -> tuple[dict[str, str], float] | None:
    """Environment with the variables and resolved secrets of `inputs`, and the deadline;
    or None after failing the run."""
    workspace = run.workspace
    # The forms refuse such names; rows saved before they did are refused here, by name.
    names = [*(inputs.get("variables") or {}), *(inputs.get("secrets") or {})]
    bad = [name for name in names if not TERRAFORM_VARIABLE_NAME.fullmatch(str(name))]
    if bad:
        fail(run.pk, log, f"Not terraform variable names: {', '.join(map(repr, bad))}.")
        return None
    references = [
        TerraformSecret(workspace=workspace, variable=variable, **reference)
        for variable, reference in (inputs.get("secrets") or {}).items()
    ]
    try:
        secrets = secrets_resolve(references)
    except SecretUnavailable as exc:
        fail(run.pk, log, f"Secret unavailable: {exc}")
        return None
    log.redactor = log.redactor.with_secrets(secrets.values())
    env = environment(cli.variables_environment(inputs.get("variables") or {}, secrets))
    return env, time.monotonic() + run_time_limit(workspace)


def environment(variables: dict[str, str]) -> dict[str, str]:
    # A secret held by environment reference (TF_SECRET_... by default) reaches only the
    # workspace naming it, as its TF_VAR_: passed along with the other TF_ variables, every
    # workspace's local-exec could read every other workspace's secrets.
    withheld = ("TF_VAR_", settings.TERRAFORM_SECRET_ENV_PREFIX or "TF_VAR_")
    env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    env.update(
        (name, value)
        for name, value in os.environ.items()
        if name.startswith(("AWS_", "TF_")) and not name.startswith(withheld)
    )
    env.update(variables)
    env.update(
        TF_IN_AUTOMATION="1",
        TF_INPUT="0",
        TF_PLUGIN_CACHE_DIR=str(workdir.plugin_cache_directory()),
    )
    return env


def terraform_init(
    step: Path,
    directory: Path,
    state_key: str,
    env: dict[str, str],
    log: RunLog,
    watch: RunWatch,
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
        return stream(command, log, directory, env, watch, deadline)


def plans_forget(workspace: TerraformWorkspace) -> None:
    """Remove the stored plans of the workspace's ended runs (discarded, cancelled, ...)."""
    ended = workspace.runs.filter(state__in=FINISHED_STATES).exclude(plan_key="")
    for run_id in ended.values_list("id", flat=True):
        plan_forget(run_id)


def plan_forget(run_id: int) -> None:
    key = TerraformRun.objects.filter(pk=run_id).values_list("plan_key", flat=True).first()
    if key:
        remote.object_delete(key)
        TerraformRun.objects.filter(pk=run_id, plan_key=key).update(plan_key="")


def fail(run_id: int, log: LogSink, message: str) -> str:
    log.line(message)
    return end_after_process(run_id, None, message)


def end_after_process(
    run_id: int, result: StreamResult | None, failure: str, *, lock_may_be_left: bool = False
) -> str:
    """End a run after a terraform process stopped or failed. One that was killed, or
    stopped by an error of ours mid-step, may have left the state locked: that is looked
    for, as for a lost run."""
    with transaction.atomic():
        run = TerraformRun.objects.select_related("workspace").get(pk=run_id)
        run = run_lock(run)
        if run.is_finished:
            return run.state
        if result is not None and result.stopped == StopReason.CANCELLED:
            who = run.cancel_requested_by.get_username() if run.cancel_requested_by else "someone"
            run_finish(run, RunState.CANCELLED, f"Cancelled by {who}; terraform was interrupted.")
        elif result is not None and result.stopped == StopReason.TIMED_OUT:
            limit = run_time_limit(run.workspace)
            run_finish(
                run, RunState.FAILED, f"Time limit of {limit} s reached; terraform was stopped."
            )
        else:
            run_finish(run, RunState.FAILED, failure)
        if lock_may_be_left or (result is not None and result.killed):
            run_state_lock_check_request(run, requester=Requester.of(run))
        return run.state


def plan_ended(run_id: int, state: RunState, message: str) -> None:
    with transaction.atomic():
        run = run_lock(TerraformRun.objects.get(pk=run_id))
        if run.state != RunState.PLANNING:
            return
        if run.kind != RunKind.DESTROY:
            TerraformWorkspace.objects.filter(pk=run.workspace_id).update(
                drifted=False, drift_checked_at=timezone.now()
            )
        run_finish(run, state, message, plan_summary={"add": 0, "change": 0, "destroy": 0})


def drift_found(
    run_id: int, *, workspace_id: int, summary: cli.PlanSummary, changes: dict[str, Any]
) -> None:
    with transaction.atomic():
        run = run_lock(TerraformRun.objects.get(pk=run_id))
        if run.state != RunState.PLANNING:
            return
        workspace = run.workspace
        if workspace.destroyed_at is not None:
            # A destroy was applied while this check waited its turn: what it found missing
            # was removed on purpose.
            run_finish(
                run,
                RunState.DISCARDED,
                "Not drift: a destroy was applied while this check waited, so the workspace "
                "manages nothing on purpose.",
                plan_summary=summary.as_dict(),
            )
            return
        newly = not workspace.drifted
        TerraformWorkspace.objects.filter(pk=workspace_id).update(
            drifted=True, drift_checked_at=timezone.now()
        )
        run_finish(
            run,
            RunState.DRIFTED,
            f"Drift: {summary}.",
            plan_summary=summary.as_dict(),
            plan_changes=changes,
        )
        if newly:
            drift_notify_on_commit(workspace, summary)


def lock_created(lock: dict[str, Any]) -> datetime:
    try:
        return datetime.fromisoformat(str(lock.get("Created", "")))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)


def summary_text(run: TerraformRun) -> str:
    summary = run.plan_summary or {}
    return (
        f"{summary.get('add', 0)} added, {summary.get('change', 0)} changed, "
        f"{summary.get('destroy', 0)} destroyed"
    )


def state_of(run_id: int) -> str | None:
    return TerraformRun.objects.filter(pk=run_id).values_list("state", flat=True).first()
