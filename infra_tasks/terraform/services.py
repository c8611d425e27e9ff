"""Writes for terraform workspaces and runs: requesting, approving, cancelling, executing.

Every state change of a run happens under a row lock (`select_for_update`), so a cancel and
a worker picking the run up, or two approvals, cannot interleave. The workspace row is locked
whenever the active run may change, which keeps the FIFO queue strict.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from infra_tasks.terraform import cli
from infra_tasks.terraform.models import (
    ACTIVE_STATES,
    WORKING_STATES,
    RunKind,
    RunState,
    TerraformRun,
    TerraformWorkspace,
)
from infra_tasks.terraform.plan_changes import plan_changes
from infra_tasks.terraform.secrets import SecretUnavailable, secrets_resolve
from workers.enqueue import Requester, job_enqueue
from workers.joblog import JobLogWriter
from workers.models import RequesterKind
from workers.redaction import default_redactor
from workers.selectors import staff_email_addresses
from workers.streaming import StopReason, StreamResult, run_streaming

logger = logging.getLogger(__name__)

DRIFT_SCHEDULE_NAME = "Terraform drift check"
WORKER_LOST = "worker lost; check the state"
STALE_PLAN_MESSAGE = (
    "The saved plan is stale: the state changed after this plan was made. "
    "Nothing was applied; queue a new plan."
)
LOG_BATCH_LINES = 2000
# Environment a terraform process inherits from the worker; everything else (database URL,
# Django secret key) stays out of reach of local-exec.
PASSED_ENVIRONMENT = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "USER", "SSL_CERT_FILE")


class RunError(Exception):
    """A request that does not fit the run's current state; the message is for the admin."""


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
    if run.state in WORKING_STATES and _silent_seconds(run) >= _stale_after():
        # Nobody is left to see the flag, and SQS would redeliver only after the queue's
        # visibility timeout (hours): end it now so the workspace is free again.
        run.cancel_requested_by_id = user.pk
        run.cancel_requested_at = timezone.now()
        return _finish(run, RunState.FAILED, _worker_lost_message(run))
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
    if run.plan_file:
        Path(run.plan_file).unlink(missing_ok=True)
    # The run's end must be recorded whatever the broker's state: the next run is sent once
    # the broker is back (outbox relay, sweeper).
    _queue_next(run.workspace, refuse_if_broker_down=False)
    return run


# --- Execution (worker) ----------------------------------------------------------------------


def run_plan_execute(*, run_id: int, task_id: str, worker: str) -> str | None:
    """Run init and plan for a queued run; returns the run's final or waiting state."""
    run = _claim(run_id, queued=RunState.QUEUED, working=RunState.PLANNING, worker=worker)
    if run is None:
        return _state_of(run_id)
    with _failed_on_error(run_id):
        return _plan(run, task_id)


def run_apply_execute(*, run_id: int, task_id: str, worker: str) -> str | None:
    """Apply exactly the run's saved plan; returns the run's final state."""
    run = _claim(run_id, queued=RunState.APPLY_QUEUED, working=RunState.APPLYING, worker=worker)
    if run is None:
        return _state_of(run_id)
    with _failed_on_error(run_id):
        return _apply(run, task_id)


@contextmanager
def _failed_on_error(run_id: int) -> Iterator[None]:
    """An unexpected error (a soft time limit, a database hiccup) must not leave the run
    active: it would hold its workspace forever."""
    try:
        yield
    except Exception as exc:
        _end_after_process(
            run_id, None, f"Stopped by an internal error ({exc.__class__.__name__}); see the job."
        )
        raise


def _plan(run: TerraformRun, task_id: str) -> str | None:
    run_id = run.pk
    workspace = run.workspace
    log = _RunLog(task_id)
    with log:
        prepared = _prepare(run, log)
        if prepared is None:
            return _state_of(run_id)
        directory, env, deadline = prepared
        watch = _Watch(run_id)
        binary = settings.TERRAFORM_BIN

        if not (directory / ".terraform").is_dir():
            result = _stream(cli.init_command(binary), log, directory, env, watch, deadline)
            if not result.ok:
                return _end_after_process(run_id, result, "terraform init failed.")

        plan_file = _plan_path(run_id)
        plan_file.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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
            plan_file.unlink(missing_ok=True)
            return _end_after_process(run_id, result, _failure_text("terraform plan", log))

        if result.returncode == cli.PLAN_NO_CHANGES:
            plan_file.unlink(missing_ok=True)
            _plan_ended(run_id, RunState.NO_CHANGES, "No changes: the infrastructure matches.")
            return RunState.NO_CHANGES

        shown = _capture(cli.show_plan_command(binary, plan_file=plan_file), directory, env, watch)
        if shown is None:
            plan_file.unlink(missing_ok=True)
            return _end_after_process(run_id, None, "terraform show could not read the saved plan.")
        summary = cli.plan_summary(shown)
        changes = plan_changes(shown, redact=log.redactor)
        log.line(f"Plan saved: {summary}.")

    if run.kind == RunKind.DRIFT_CHECK:
        plan_file.unlink(missing_ok=True)
        _drift_found(run_id, workspace_id=workspace.pk, summary=summary, changes=changes)
        return RunState.DRIFTED
    digest = hashlib.sha256(plan_file.read_bytes()).hexdigest()
    with transaction.atomic():
        run = _lock(run)
        if run.state != RunState.PLANNING:
            plan_file.unlink(missing_ok=True)
            return run.state
        if run.cancel_requested_at is not None:
            # Asked to stop just as terraform finished: the plan is not offered for approval.
            plan_file.unlink(missing_ok=True)
            who = run.cancel_requested_by.get_username() if run.cancel_requested_by else "someone"
            _finish(run, RunState.CANCELLED, f"Cancelled by {who}.")
            return RunState.CANCELLED
        run.state = RunState.PLANNED
        run.plan_file = str(plan_file)
        run.plan_sha256 = digest
        run.plan_summary = summary.as_dict()
        run.plan_changes = changes
        run.message = f"Plan: {summary}. Waiting for approval."
        run.heartbeat_at = timezone.now()
        run.save()
    return RunState.PLANNED


def _apply(run: TerraformRun, task_id: str) -> str | None:
    run_id = run.pk
    log = _RunLog(task_id)
    with log:
        prepared = _prepare(run, log)
        if prepared is None:
            return _state_of(run_id)
        directory, env, deadline = prepared
        plan_file = Path(run.plan_file)
        if not plan_file.is_file() or (
            hashlib.sha256(plan_file.read_bytes()).hexdigest() != run.plan_sha256
        ):
            message = "The saved plan is missing or was altered; nothing was applied. Plan again."
            log.line(message)
            return _end_after_process(run_id, None, message)

        log.progress = cli.Progress(total=sum((run.plan_summary or {}).values()) or None)
        log.set_progress(0, log.progress.total)
        watch = _Watch(run_id)
        binary = settings.TERRAFORM_BIN
        result = _stream(
            cli.apply_command(
                binary, plan_file=plan_file, lock_timeout=settings.TERRAFORM_LOCK_TIMEOUT_SECONDS
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
        public = cli.public_outputs(outputs or {})
        log.line(f"Apply complete; outputs stored: {', '.join(sorted(public)) or 'none'}.")

    with transaction.atomic():
        run = _lock(run)
        # What is deployed is now what the configuration says: no drift.
        TerraformWorkspace.objects.filter(pk=run.workspace_id).update(outputs=public, drifted=False)
        _finish(run, RunState.APPLIED, f"Applied: {_summary_text(run)}.")
    return RunState.APPLIED


def _claim(run_id: int, *, queued: RunState, working: RunState, worker: str) -> TerraformRun | None:
    """Take the run for this worker, or return None if there is nothing (more) to do.

    A run already in `working` means the message came again. If its worker is still
    beating, this is a duplicate and is dropped; once it has been silent past the limit, the
    worker is gone with terraform perhaps half done, so the run fails rather than being
    started a second time.
    """
    stale_after = _stale_after()
    while True:
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
            if run.state != working:
                return None
            beat = run.heartbeat_at
            silent = _silent_seconds(run)
            if silent >= stale_after:
                _finish(run, RunState.FAILED, _worker_lost_message(run))
                return None
        time.sleep(min(stale_after - silent, settings.TERRAFORM_HEARTBEAT_SECONDS))
        still = (
            TerraformRun.objects.filter(pk=run_id).values_list("heartbeat_at", flat=True).first()
        )
        if still is not None and beat is not None and still > beat:
            return None


def _stale_after() -> float:
    """Seconds without a heartbeat after which a run's worker is taken for gone."""
    return float(settings.TERRAFORM_HEARTBEAT_SECONDS * 4)


def _silent_seconds(run: TerraformRun) -> float:
    if run.heartbeat_at is None:
        return float("inf")
    return (timezone.now() - run.heartbeat_at).total_seconds()


def _worker_lost_message(run: TerraformRun) -> str:
    return (
        f"{run.get_state_display()} on {run.worker or 'a worker'} stopped: {WORKER_LOST}. "
        "Terraform may have been interrupted mid-way; plan again to see what is left."
    )


def _prepare(run: TerraformRun, log: _RunLog) -> tuple[Path, dict[str, str], float] | None:
    """Directory, environment with secrets, deadline; or None after failing the run."""
    workspace = run.workspace
    try:
        directory = cli.workspace_dir(Path(settings.TERRAFORM_ROOT), workspace.directory)
    except cli.WorkspacePathError as exc:
        _end_after_process(run.pk, None, f"Refused: {exc}.")
        return None
    if not directory.is_dir():
        message = f"{workspace.directory!r} does not exist under TERRAFORM_ROOT on this worker."
        log.line(message)
        _end_after_process(run.pk, None, message)
        return None
    try:
        secrets = secrets_resolve(workspace.secrets.all())
    except SecretUnavailable as exc:
        log.line(f"Secret unavailable: {exc}")
        _end_after_process(run.pk, None, f"Secret unavailable: {exc}")
        return None
    log.redactor = log.redactor.with_secrets(secrets.values())
    env = {name: os.environ[name] for name in PASSED_ENVIRONMENT if name in os.environ}
    env.update(
        (name, value)
        for name, value in os.environ.items()
        if name.startswith(("AWS_", "TF_")) and not name.startswith("TF_VAR_")
    )
    env.update(cli.variables_environment(workspace.variables or {}, secrets))
    env.update(TF_IN_AUTOMATION="1", TF_INPUT="0")
    limit = workspace.run_time_limit_seconds or settings.TERRAFORM_RUN_TIME_LIMIT_SECONDS
    log.line(f"-- {run.get_kind_display().lower()} of {workspace} in {directory} --")
    return directory, env, time.monotonic() + limit


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


def _plan_path(run_id: int) -> Path:
    return Path(settings.TERRAFORM_PLAN_DIR) / f"run-{run_id}.tfplan"


def _state_of(run_id: int) -> str | None:
    return TerraformRun.objects.filter(pk=run_id).values_list("state", flat=True).first()
