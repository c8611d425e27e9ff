"""The worker's part of a release: run its migrations under the lock, record the outcome.

`release_execute` is what the `release` queue's job calls (tasks.py); `migrations_run` is
the migration itself (plan, backward-incompatible gate, `migrate` under statement limits),
shared with the in-process path (run_here.py), whose caller holds the lock itself.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from infra_tasks.releases.compat import Finding
from infra_tasks.releases.locking import MigrationLockTimeout, migration_lock
from infra_tasks.releases.models import FINISHED_STATES, Release, ReleaseState
from infra_tasks.releases.selectors import (
    PlanStep,
    migration_plan_findings,
    migration_plan_pending,
)
from workers.errors import ApplicationError
from workers.joblog import JobLogWriter
from workers.logsink import LogSink

# PostgreSQL SQLSTATEs worth explaining in words.
LOCK_NOT_AVAILABLE = "55P03"
QUERY_CANCELED = "57014"


class ReleaseFailed(ApplicationError):
    """The release ran and failed; its record holds the error and its job the log."""


@dataclass(frozen=True)
class Outcome:
    succeeded: bool
    summary: str
    plan: list[PlanStep] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    applied: int = 0
    error: str = ""


def release_execute(*, release_id: int, task_id: str) -> dict[str, Any] | None:
    """The worker's part: run the release's migrations; safe to call again for the same job."""
    with transaction.atomic():
        release = Release.objects.select_for_update().filter(pk=release_id).first()
        if release is None or release.task_id != task_id:
            return None  # deleted, or a stale message of an earlier attempt
        if release.state == ReleaseState.SUCCEEDED:
            return release_result(release)  # a duplicate delivery: report what was done
        if release.state == ReleaseState.FAILED:
            # This attempt was ended without its job (its worker lost, release_mark_lost):
            # its message, delivered again after all, fails too rather than reading SUCCESS.
            raise ReleaseFailed(f"release {release.version} failed: {release.error}")
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
    return release_result(release)


def migrations_run(
    connection: BaseDatabaseWrapper,
    *,
    log: LogSink,
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


def release_mark_lost(*, task_id: str, reason: str) -> None:
    """A release whose job ended where it could not say so (its worker lost for good, killed
    at the hard time limit): failed, not "running" for good, so its page offers to run it
    again. Each migration commits on its own: those it applied stay applied."""
    Release.objects.filter(task_id=task_id).exclude(state__in=FINISHED_STATES).update(
        state=ReleaseState.FAILED,
        summary="the job was lost",
        error=f"its job {task_id} did not finish ({reason}); migrations it had applied stay "
        "applied: run it again to apply the rest",
        finished_at=timezone.now(),
    )


def release_plan_record(release_id: int, plan: list[PlanStep], findings: list[Finding]) -> None:
    """Store the plan computed under the lock, and what in it is backward-incompatible."""
    Release.objects.filter(pk=release_id).update(
        plan=[step.as_dict() for step in plan],
        unsafe_findings=[finding.as_dict() for finding in findings],
    )


def release_result(release: Release) -> dict[str, Any]:
    """What the release's job returns: its stored result."""
    return {
        "release": release.version,
        "state": release.state,
        "applied": release.applied,
        "summary": release.summary,
    }


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
                on_plan=lambda plan, findings: release_plan_record(release.pk, plan, findings),
            )
    except MigrationLockTimeout as exc:
        log.line(f"!! {exc}")
        return Outcome(False, "gave up waiting for the migration lock", error=str(exc))


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
    names = ["lock_timeout", "statement_timeout"]
    values = [settings.RELEASE_DB_LOCK_TIMEOUT, settings.RELEASE_DB_STATEMENT_TIMEOUT]
    # PostgreSQL notices a client gone only when it next talks to it: a worker killed in the
    # middle of a long statement (an ALTER of a big table, a CREATE INDEX) would leave its
    # session running the statement to its end, holding the migration lock and the tables'
    # locks, so the release taken over would wait for it and fail. Checked every few seconds
    # instead, the session ends with its process (PostgreSQL 14 and later).
    if connection.pg_version >= 140000:  # type: ignore[attr-defined]
        names.append("client_connection_check_interval")
        values.append(settings.RELEASE_DB_CLIENT_CHECK_INTERVAL)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT " + ", ".join(f"set_config('{name}', %s, false)" for name in names), values
        )
    try:
        yield
    finally:
        try:
            with connection.cursor() as cursor:
                for name in names:
                    cursor.execute(f"RESET {name}")
        except Exception:
            connection.close()  # a fresh connection starts with the server's defaults


class _Stream:
    """What `migrate` writes to stdout, as log lines.

    `migrate` writes "Applying x..." and only appends " OK" when x is done; the line is ended
    at once so a long migration shows in the live log while it runs.
    """

    def __init__(self, log: LogSink) -> None:
        self.log = log

    def write(self, text: str) -> None:
        self.log.write(text if text.endswith("\n") else text + "\n")
        # A job log stores its lines in batches, on the next write once a batch is due; a
        # migration that runs for minutes writes nothing meanwhile. Stored now, the live log
        # names the migration under way, and so does the log of a worker killed during it.
        # (migrate writes between migrations, outside their transactions.)
        flush = getattr(self.log, "flush", None)
        if callable(flush):
            flush()

    def flush(self) -> None:
        pass
