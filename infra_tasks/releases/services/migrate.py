"""Writes: starting a release, running its migrations under the lock, recording the outcome.

Two ways in, one way through. The deploy pipeline and the admin call `release_start`, which
records the release and queues `release_migrate` on the `release` queue; the worker calls
`release_execute`. `release_run_here` runs the same `migrations_run` in the calling process
under the same lock, for the one moment no worker can: a database whose record tables do not
exist yet (see its docstring).
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from celery import states
from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone
from django_celery_results.models import TaskResult

from infra_tasks.releases.compat import Finding
from infra_tasks.releases.locking import MigrationLockTimeout, migration_lock
from infra_tasks.releases.models import FINISHED_STATES, Release, ReleaseState
from infra_tasks.releases.selectors import (
    PlanStep,
    migration_plan_findings,
    migration_plan_pending,
    plan_touches_records,
)
from workers.enqueue import Requester, job_enqueue, job_record_pending, new_task_id
from workers.joblog import JobLogWriter
from workers.models import Job, RequesterKind
from workers.outbox import OutboundJob

# The Job queue of a release run by `release --run-here` in the calling process.
IN_PROCESS_QUEUE = "in-process"
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/@-]{0,99}")
# PostgreSQL SQLSTATEs worth explaining in words.
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"


class ReleaseRefused(Exception):
    """The release cannot be started as asked; the message says why."""


class ReleaseFailed(Exception):
    """The release ran and failed; its record holds the error and its job the log."""


class LogLines(Protocol):
    def write(self, text: str) -> None: ...

    def line(self, text: str) -> None: ...


class StartStatus(StrEnum):
    QUEUED = "queued"
    RETRIED = "retried"
    IN_PROGRESS = "in progress"
    ALREADY_SUCCEEDED = "already succeeded"


@dataclass(frozen=True)
class ReleaseStart:
    release: Release
    status: StartStatus


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    summary: str
    plan: list[PlanStep] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    applied: int = 0
    error: str = ""


def version_validate(version: str) -> None:
    if not VERSION_PATTERN.fullmatch(version):
        raise ReleaseRefused(
            f"{version!r} is not a release version: use up to 100 letters, digits and . _ : + / @ -"
            ", starting with a letter or digit"
        )


@transaction.atomic
def release_start(
    *, version: str, requester: Requester, allow_unsafe: bool = False
) -> ReleaseStart:
    """Record release `version` and queue its migration job, unless that needs no doing."""
    from infra_tasks.releases.tasks import release_migrate

    version_validate(version)
    if plan_touches_records(migration_plan_pending()):
        raise ReleaseRefused(
            "this database cannot hold release records yet: migrations of the release, job or "
            "result tables are pending, and a queued job records itself in them. Bootstrap it "
            f"with `manage.py release --version {version} --run-here`."
        )
    release, created = Release.objects.select_for_update().get_or_create(
        version=version, defaults=_requested_by(requester, allow_unsafe=allow_unsafe)
    )
    if not created:
        _fail_if_job_died(release)
        if release.state == ReleaseState.SUCCEEDED:
            return ReleaseStart(release, StartStatus.ALREADY_SUCCEEDED)
        if release.state != ReleaseState.FAILED:
            return ReleaseStart(release, StartStatus.IN_PROGRESS)
        _reset_for_retry(release, requester=requester, allow_unsafe=allow_unsafe)
    # If the broker is down job_enqueue raises here and this transaction, the new release
    # or its reset included, rolls back.
    release.task_id = new_task_id()
    release.save()
    job_enqueue(
        release_migrate,
        requester=requester,
        args=[release.pk],
        audit_object=release,
        task_id=release.task_id,
    )
    return ReleaseStart(release, StartStatus.QUEUED if created else StartStatus.RETRIED)


def release_execute(*, release_id: int, task_id: str) -> dict[str, Any] | None:
    """The worker's part: run the release's migrations; safe to call again for the same job."""
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(pk=release_id).first()
        if release is None or release.task_id != task_id:
            return None  # deleted, or a stale message of an earlier attempt
        if release.state == ReleaseState.SUCCEEDED:
            return _task_result(release)  # a duplicate delivery: report what was done
        if release.state == ReleaseState.FAILED:
            return None
        release.state = ReleaseState.RUNNING
        release.attempts += 1
        release.started_at = timezone.now()
        release.save(update_fields=["state", "attempts", "started_at"])

    connection = connections[DEFAULT_DB_ALIAS]
    try:
        with JobLogWriter(task_id) as log:
            if log.resumed:
                log.line("-- delivered again after the worker was lost; starting over --")
            log.line(f"release {release.version}, requested by {release.requester}")
            outcome = _run_locked(connection, log=log, release=release)
            log.line(("succeeded: " if outcome.succeeded else "FAILED: ") + outcome.summary)
    except Exception as exc:
        release_record_outcome(
            release_id=release.pk,
            outcome=Outcome(False, "the job crashed", error=f"{type(exc).__name__}: {exc}"),
        )
        raise
    release = release_record_outcome(release_id=release.pk, outcome=outcome)
    if not outcome.succeeded:
        raise ReleaseFailed(f"release {release.version} failed: {outcome.error}")
    return _task_result(release)


@dataclass(frozen=True)
class RunHereResult:
    status: StartStatus
    outcome: Outcome | None
    release: Release | None


def release_run_here(
    *,
    version: str,
    requester: Requester,
    allow_unsafe: bool = False,
    echo: Callable[[str], object],
) -> RunHereResult:
    """Run release `version` in this process, under the same lock, recorded the same way.

    This is for bootstrapping: on a fresh database (or one whose record tables themselves have
    pending migrations) no release record, job or log can be written and no worker can be
    trusted with the job, because the worker processes write to those tables and, in the dev
    stack, start only after this runs. So the plan is applied here, under the migration lock,
    with its output kept in memory (and echoed); once the record tables exist the release, its
    Job/TaskResult (queue "in-process") and its log are written from what was kept. When the
    record tables are already up to date this is simply the worker's path run in-process.
    """
    version_validate(version)
    connection = connections[DEFAULT_DB_ALIAS]
    with migration_lock(
        connection, wait_seconds=settings.RELEASE_LOCK_WAIT_SECONDS, on_wait=_echo_line(echo)
    ):
        if plan_touches_records(migration_plan_pending(connection=connection)):
            return _bootstrap_here(
                connection,
                version=version,
                requester=requester,
                allow_unsafe=allow_unsafe,
                echo=echo,
            )
        return _recorded_here(
            connection, version=version, requester=requester, allow_unsafe=allow_unsafe, echo=echo
        )


def migrations_run(
    connection: BaseDatabaseWrapper,
    *,
    log: LogLines,
    allow_unsafe: bool,
    on_plan: Callable[[list[PlanStep], list[Finding]], object] = lambda plan, findings: None,
) -> Outcome:
    """Apply every pending migration; the caller holds the migration lock."""
    plan = migration_plan_pending(connection=connection)
    if not plan:
        on_plan(plan, [])
        log.line("nothing to do: no migrations are pending")
        return Outcome(True, "nothing to do: no migrations were pending")
    findings = migration_plan_findings(plan, connection=connection)
    on_plan(plan, findings)
    log.line(f"plan: {len(plan)} migration(s)")
    for step in plan:
        log.line(f"  {step}")
    if findings:
        log.line(f"backward-incompatible operations: {len(findings)}")
        for finding in findings:
            log.line(f"  {finding}")
        if not allow_unsafe:
            return Outcome(
                False,
                "refused: backward-incompatible migrations",
                plan,
                findings,
                error=(
                    f"refused {len(findings)} backward-incompatible operation(s) ("
                    + "; ".join(str(f) for f in findings)
                    + "); nothing was migrated. Split the change so old code keeps working, "
                    "or release again with --allow-unsafe if no old code runs alongside."
                ),
            )
        log.line("  allowed for this release (--allow-unsafe)")
    try:
        with _statement_limits(connection):
            call_command("migrate", interactive=False, verbosity=1, stdout=_Stream(log))
    except Exception as exc:
        done = _applied_steps(connection, plan)
        failed_at = next((s for s in plan if s not in done), None)
        where = failed_at.label if failed_at else "migrate"
        error = f"{where} failed: {_describe(exc)} ({len(done)} of {len(plan)} applied before it)"
        log.line(f"!! {error}")
        return Outcome(False, f"failed at {where}", plan, findings, len(done), error)
    return Outcome(True, f"applied {len(plan)} migration(s)", plan, findings, len(plan))


def release_record_outcome(*, release_id: int, outcome: Outcome) -> Release:
    with transaction.atomic():
        release = Release.objects.select_for_update().get(pk=release_id)
        release.state = ReleaseState.SUCCEEDED if outcome.succeeded else ReleaseState.FAILED
        release.summary = outcome.summary
        release.error = outcome.error
        release.applied = outcome.applied
        release.finished_at = timezone.now()
        release.save(update_fields=["state", "summary", "error", "applied", "finished_at"])
    return release


# --- helpers ---------------------------------------------------------------------------------


def _run_locked(connection: BaseDatabaseWrapper, *, log: JobLogWriter, release: Release) -> Outcome:
    def on_wait(message: str) -> None:
        log.line(message)
        log.flush()  # the waiter's log says so now, not once the wait is over

    try:
        with migration_lock(
            connection, wait_seconds=settings.RELEASE_LOCK_WAIT_SECONDS, on_wait=on_wait
        ):
            return migrations_run(
                connection,
                log=log,
                allow_unsafe=release.allow_unsafe,
                on_plan=lambda plan, findings: _record_plan(release.pk, plan, findings),
            )
    except MigrationLockTimeout as exc:
        log.line(f"!! {exc}")
        return Outcome(False, "gave up waiting for the migration lock", error=str(exc))


def _record_plan(release_id: int, plan: list[PlanStep], findings: list[Finding]) -> None:
    Release.objects.filter(pk=release_id).update(
        plan=[step.as_dict() for step in plan],
        unsafe_findings=[finding.as_dict() for finding in findings],
    )


def _recorded_here(
    connection: BaseDatabaseWrapper,
    *,
    version: str,
    requester: Requester,
    allow_unsafe: bool,
    echo: Callable[[str], object],
) -> RunHereResult:
    with transaction.atomic():
        release, created = Release.objects.select_for_update().get_or_create(
            version=version, defaults=_requested_by(requester, allow_unsafe=allow_unsafe)
        )
        if not created:
            _fail_if_job_died(release)
            if release.state == ReleaseState.SUCCEEDED:
                return RunHereResult(StartStatus.ALREADY_SUCCEEDED, None, release)
            if release.state != ReleaseState.FAILED:
                raise ReleaseRefused(
                    f"release {version} is already {release.state} as job {release.task_id}; "
                    "follow it with --wait instead of running it here"
                )
            _reset_for_retry(release, requester=requester, allow_unsafe=allow_unsafe)
        task_id = _record_job_here(release, requester=requester)

    with JobLogWriter(task_id) as job_log:
        log = _Tee(job_log, echo)
        log.line(f"release {version}, requested by {release.requester}, running in-process")
        outcome = migrations_run(
            connection,
            log=log,
            allow_unsafe=allow_unsafe,
            on_plan=lambda plan, findings: _record_plan(release.pk, plan, findings),
        )
        log.line(("succeeded: " if outcome.succeeded else "FAILED: ") + outcome.summary)
    release = release_record_outcome(release_id=release.pk, outcome=outcome)
    _finish_task_result(release, outcome)
    return RunHereResult(
        StartStatus.RETRIED if not created else StartStatus.QUEUED, outcome, release
    )


def _bootstrap_here(
    connection: BaseDatabaseWrapper,
    *,
    version: str,
    requester: Requester,
    allow_unsafe: bool,
    echo: Callable[[str], object],
) -> RunHereResult:
    started_at = timezone.now()
    kept = _Kept(echo)
    who = f"{RequesterKind(requester.kind).label}: {requester.label}"
    kept.line(f"release {version}, requested by {who}, running in-process")
    kept.line("bootstrap: the release record tables are not up to date yet; output is kept")
    kept.line("in memory and recorded once the migrations below have created them")
    outcome = migrations_run(connection, log=kept, allow_unsafe=allow_unsafe)
    kept.line(("succeeded: " if outcome.succeeded else "FAILED: ") + outcome.summary)
    if plan_touches_records(migration_plan_pending(connection=connection)):
        # Failed before the record tables were complete: nowhere to record it but here.
        return RunHereResult(StartStatus.QUEUED, outcome, None)

    with transaction.atomic():
        release, created = Release.objects.select_for_update().get_or_create(
            version=version, defaults=_requested_by(requester, allow_unsafe=allow_unsafe)
        )
        if not created:
            _reset_for_retry(release, requester=requester, allow_unsafe=allow_unsafe)
        task_id = _record_job_here(release, requester=requester, started_at=started_at)
        _record_plan(release.pk, outcome.plan, outcome.findings)
    with JobLogWriter(task_id) as job_log:
        for text in kept.lines():
            job_log.line(text)
    release = release_record_outcome(release_id=release.pk, outcome=outcome)
    _finish_task_result(release, outcome)
    return RunHereResult(StartStatus.QUEUED, outcome, release)


def _record_job_here(release: Release, *, requester: Requester, started_at: Any = None) -> str:
    """The Job and TaskResult a worker run would have, for a run in this process."""
    task_id = new_task_id()
    release.task_id = task_id
    release.state = ReleaseState.RUNNING
    release.attempts += 1
    release.started_at = started_at or timezone.now()
    release.save()
    from infra_tasks.releases.tasks import release_migrate

    message = OutboundJob(
        task=release_migrate,
        task_id=task_id,
        args=[release.pk],
        kwargs={},
        options={"queue": IN_PROCESS_QUEUE},
    )
    job_record_pending(message, requester=requester)
    # Never to be sent: marking it so keeps the unsent-job sweeper from publishing it.
    Job.objects.filter(task_id=task_id).update(sent_at=timezone.now())
    TaskResult.objects.filter(task_id=task_id).update(
        status=states.STARTED,
        date_started=release.started_at,
        worker=f"release --run-here@{socket.gethostname()}",
    )
    return task_id


def _finish_task_result(release: Release, outcome: Outcome) -> None:
    if outcome.succeeded:
        status, result, traceback = states.SUCCESS, _task_result(release), None
    else:
        status = states.FAILURE
        result = {
            "exc_type": ReleaseFailed.__name__,
            "exc_message": [outcome.error],
            "exc_module": ReleaseFailed.__module__,
        }
        traceback = f"ReleaseFailed: {outcome.error}\n(run in-process: no Python traceback)"
    TaskResult.objects.filter(task_id=release.task_id).update(
        status=status, result=json.dumps(result), traceback=traceback, date_done=timezone.now()
    )


def _requested_by(requester: Requester, *, allow_unsafe: bool) -> dict[str, Any]:
    return {
        "requester_kind": requester.kind,
        "requester_label": requester.label,
        "requested_by_id": requester.user_id,
        "allow_unsafe": allow_unsafe,
    }


def _reset_for_retry(release: Release, *, requester: Requester, allow_unsafe: bool) -> None:
    """A failed release asked for again: a new attempt; earlier jobs stay listed."""
    if release.task_id:
        release.previous_task_ids = [*release.previous_task_ids, release.task_id]
    for name, value in _requested_by(requester, allow_unsafe=allow_unsafe).items():
        setattr(release, name, value)
    release.state = ReleaseState.QUEUED
    release.task_id = ""
    release.plan = None
    release.unsafe_findings = []
    release.applied = 0
    release.summary = release.error = ""
    release.started_at = release.finished_at = None


def _fail_if_job_died(release: Release) -> None:
    """A release whose job ended without recording an outcome (killed at the hard time limit,
    revoked) would otherwise stay 'running' forever and block its own retry."""
    if release.state in FINISHED_STATES or not release.task_id:
        return
    status = (
        TaskResult.objects.filter(task_id=release.task_id).values_list("status", flat=True).first()
    )
    if status in (states.FAILURE, states.REVOKED):
        release.state = ReleaseState.FAILED
        release.error = f"its job {release.task_id} ended {status} without recording an outcome"
        release.summary = "the job died"
        release.finished_at = timezone.now()
        release.save(update_fields=["state", "error", "summary", "finished_at"])


def _task_result(release: Release) -> dict[str, Any]:
    return {
        "release": release.version,
        "state": release.state,
        "applied": release.applied,
        "summary": release.summary,
    }


def _applied_steps(connection: BaseDatabaseWrapper, plan: list[PlanStep]) -> list[PlanStep]:
    try:
        applied = MigrationRecorder(connection).applied_migrations()
    except Exception:
        return []  # the connection is gone; the error itself says enough
    return [s for s in plan if ((s.app, s.name) in applied) != s.backwards]


def _describe(exc: BaseException) -> str:
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    text = f"{type(exc).__name__}: {str(exc).strip()}"
    if sqlstate == LOCK_NOT_AVAILABLE:
        return (
            f"{text} — another session held a lock on a table this migration alters for longer "
            f"than RELEASE_DB_LOCK_TIMEOUT ({settings.RELEASE_DB_LOCK_TIMEOUT}); the migration "
            "was rolled back. Find the blocking session (pg_stat_activity) and release again."
        )
    if sqlstate == QUERY_CANCELED:
        return (
            f"{text} — a statement ran longer than RELEASE_DB_STATEMENT_TIMEOUT "
            f"({settings.RELEASE_DB_STATEMENT_TIMEOUT}); the migration was rolled back."
        )
    return text


@contextmanager
def _statement_limits(connection: BaseDatabaseWrapper) -> Iterator[None]:
    """lock_timeout and statement_timeout on the migrating connection, for this release only.

    Without a lock_timeout an ALTER TABLE queued behind a long transaction holds its own
    ACCESS EXCLUSIVE request meanwhile, and every query on that table queues behind it: the
    site stalls. With it, the migration fails fast and clearly instead. Set per session (not
    per transaction) because each migration runs in its own transaction; reset afterwards
    because the connection is reused. SQLite has neither setting: its busy timeout (the
    database OPTIONS' "timeout") bounds a blocked write, and the queue's time limit the job.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('lock_timeout', %s, false),"
            " set_config('statement_timeout', %s, false)",
            [settings.RELEASE_DB_LOCK_TIMEOUT, settings.RELEASE_DB_STATEMENT_TIMEOUT],
        )
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                cursor.execute("RESET lock_timeout")
                cursor.execute("RESET statement_timeout")
        except Exception:
            connection.close()  # a fresh connection starts with the server's defaults


class _Stream:
    """What `migrate` writes to stdout, as log lines.

    `migrate` writes "Applying x..." and only appends " OK" when x is done; the line is ended
    at once so a long migration shows in the live log while it runs.
    """

    def __init__(self, log: LogLines) -> None:
        self.log = log

    def write(self, text: str) -> None:
        self.log.write(text if text.endswith("\n") else text + "\n")

    def flush(self) -> None:
        pass


class _Tee:
    def __init__(self, log: LogLines, echo: Callable[[str], object]) -> None:
        self.log = log
        self.echo = echo

    def write(self, text: str) -> None:
        self.log.write(text)
        self.echo(text)

    def line(self, text: str) -> None:
        self.write(text + "\n")


class _Kept:
    """Output kept in memory (and echoed) until there is a job log to write it to."""

    def __init__(self, echo: Callable[[str], object]) -> None:
        self.echo = echo
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.echo(text)

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def lines(self) -> list[str]:
        return "".join(self.parts).rstrip("\n").split("\n")


def _echo_line(echo: Callable[[str], object]) -> Callable[[str], object]:
    return lambda text: echo(text + "\n")
