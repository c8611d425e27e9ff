"""A database action: requested by a person (or enforcement), fired by a schedule, and
carried out by a worker through `operations.Operator`.

A request records a `DatabaseAction` and queues `jobs.DATABASE_ACTION_EXECUTE` in the
caller's transaction; a schedule firing (`jobs.DATABASE_SCHEDULED_RUN`) records its own,
once per occurrence (skipping a stop while the database is kept running: schedules.py).
Either way the record ends in a finished state, whatever went wrong.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infra_tasks.rds import jobs
from infra_tasks.rds.models import (
    FINISHED_ACTION_STATES,
    ActionKind,
    ActionState,
    DatabaseAction,
    DesiredState,
    ManagedDatabase,
)
from infra_tasks.rds.operations import Limits, Operator, Outcome, Target, rds_client
from infra_tasks.rds.schedule_times import previous_occurrence
from infra_tasks.rds.selectors import database_cron_spec
from workers.enqueue import Requester, job_enqueue, new_task_id
from workers.errors import ApplicationError
from workers.joblog import JobLogWriter
from workers.logsink import LogSink
from workers.selectors import job_requester_by_hand

# A worker's clock may trail beat's by a little; the occurrence a firing serves is looked
# up this far ahead so it is never mistaken for the previous day's.
OCCURRENCE_TOLERANCE = timedelta(minutes=5)


@transaction.atomic
def database_action_request(
    *, database: ManagedDatabase, action: str, requester: Requester
) -> DatabaseAction:
    """Queue a stop/start/refresh job. Stop and start also set what the database should be."""
    database = ManagedDatabase.objects.select_for_update().get(pk=database.pk)
    if action == ActionKind.STOP:
        database.desired_state = DesiredState.STOPPED
        database.keep_running_until = None
    elif action == ActionKind.START:
        database.desired_state = DesiredState.RUNNING
    if action != ActionKind.REFRESH:
        database.save(update_fields=["desired_state", "keep_running_until"])
    return database_action_enqueue(database, action, requester=requester, audit_object=database)


def database_action_enqueue(
    database: ManagedDatabase,
    action: str,
    *,
    requester: Requester,
    audit_object: Any = None,
    refuse_if_broker_down: bool = True,
) -> DatabaseAction:
    """Record an action and queue its job, in the caller's transaction. With
    `refuse_if_broker_down=False` it is recorded even while SQS is down, and sent once it is
    back (see job_enqueue)."""
    record = DatabaseAction.objects.create(
        database=database,
        action=action,
        **requester.as_fields(),
        task_id=new_task_id(),
    )
    job_enqueue(
        jobs.DATABASE_ACTION_EXECUTE,
        requester=requester,
        args=[record.pk],
        audit_object=audit_object,
        task_id=record.task_id,
        refuse_if_broker_down=refuse_if_broker_down,
    )
    return record


def database_action_execute(
    *, action_id: int, task_id: str, client: Any = None
) -> dict[str, Any] | None:
    """Carry out a queued action; a redelivered or duplicate message changes nothing."""
    with transaction.atomic():
        record = (
            DatabaseAction.objects.select_for_update()
            .select_related("database")
            .filter(pk=action_id)
            .first()
        )
        if record is None:
            return None
        if record.state in FINISHED_ACTION_STATES:
            return _summary(record)
        record.state = ActionState.RUNNING
        record.attempts += 1
        record.save(update_fields=["state", "attempts"])
    with JobLogWriter(task_id) as log:
        return _perform(record, log=log, client=client)


def database_action_mark_lost(*, task_id: str, reason: str) -> None:
    """An action whose job ended where it could not say so (its worker lost, killed at its
    time limit): recorded as failed, not left running; what AWS did is looked at again by the
    next refresh or enforcement pass."""
    DatabaseAction.objects.filter(task_id=task_id).exclude(state__in=FINISHED_ACTION_STATES).update(
        state=ActionState.FAILED,
        message=f"The job did not finish: {reason}. Refresh the database's state to see "
        "where it is.",
        finished_at=timezone.now(),
    )


def database_scheduled_run(
    *, database_id: int, action: str, task_id: str, now: datetime | None = None, client: Any = None
) -> dict[str, Any] | None:
    """What a schedule firing does: once per occurrence, honouring keep-running-until.

    Started by someone (the Jobs home's Run now, the schedules list's Run, a Retry), it is
    theirs: done now whatever occurrence beat served last, and recorded as asked by them."""
    now = now or timezone.now()
    redelivered = DatabaseAction.objects.filter(task_id=task_id).values_list("pk", flat=True)
    if redelivered:
        # This very firing was under way when its worker died: finish it, not skip it.
        return database_action_execute(action_id=redelivered[0], task_id=task_id, client=client)
    asked_by = job_requester_by_hand(task_id=task_id)  # None: a firing of the schedule
    with transaction.atomic():
        database = ManagedDatabase.objects.select_for_update().filter(pk=database_id).first()
        if database is None:
            return None
        spec = database_cron_spec(database=database, action=action)
        occurrence = previous_occurrence(spec, now + OCCURRENCE_TOLERANCE) if spec else None
        field = "last_stop_occurrence" if action == ActionKind.STOP else "last_start_occurrence"
        if asked_by is None:  # beat's record of the occurrence it served is beat's alone
            if occurrence is not None and getattr(database, field) == occurrence:
                # Beat fired twice for one occurrence; the first firing did the work.
                return {"database": database_id, "action": action, "duplicate_of": str(occurrence)}
            setattr(database, field, occurrence)
        kept = action == ActionKind.STOP and (
            database.keep_running_until is not None and database.keep_running_until > now
        )
        if not kept:
            database.desired_state = (
                DesiredState.STOPPED if action == ActionKind.STOP else DesiredState.RUNNING
            )
            if action == ActionKind.STOP:
                database.keep_running_until = None
        database.save(update_fields=[field, "desired_state", "keep_running_until"])
        record = DatabaseAction.objects.create(
            database=database,
            action=action,
            **(asked_by or Requester.schedule(database.schedule_name(action))).as_fields(),
            task_id=task_id,
            state=ActionState.SKIPPED if kept else ActionState.RUNNING,
            attempts=0 if kept else 1,
            finished_at=now if kept else None,
            message=(
                f"kept running until {database.keep_running_until:%Y-%m-%d %H:%M %Z}"
                if kept
                else ""
            ),
        )
    with JobLogWriter(task_id) as log:
        if asked_by is not None:
            log.line(f"started by {record.requester}, not by a firing of the schedule")
        elif occurrence is not None:
            log.line(f"schedule occurrence {occurrence:%Y-%m-%d %H:%M} UTC")
        if kept:
            log.line(f"{database.name}: {record.message}; nightly stop skipped")
            return _summary(record)
        return _perform(record, log=log, client=client)


def operation_limits() -> Limits:
    """The retry, throttling and waiting bounds of every AWS call, from the settings."""
    return Limits(
        retry_attempts=settings.RDS_RETRY_ATTEMPTS,
        retry_base_seconds=settings.RDS_RETRY_BASE_SECONDS,
        retry_max_seconds=settings.RDS_RETRY_MAX_SECONDS,
        throttle_attempts=settings.RDS_THROTTLE_ATTEMPTS,
        poll_seconds=settings.RDS_POLL_SECONDS,
        wait_timeout_seconds=settings.RDS_WAIT_TIMEOUT_SECONDS,
    )


def database_operator(database: ManagedDatabase, *, log: LogSink, client: Any = None) -> Operator:
    """The operator of one database (on `client` if given: a stub, the local endpoint)."""
    return Operator(
        client if client is not None else rds_client(database.region),
        Target(database.kind, database.identifier),
        log=log,
        limits=operation_limits(),
    )


def _perform(record: DatabaseAction, *, log: LogSink, client: Any) -> dict[str, Any]:
    operator = database_operator(record.database, log=log, client=client)
    try:
        if record.action == ActionKind.STOP:
            outcome = operator.stop()
        elif record.action == ActionKind.START:
            outcome = operator.start()
        else:
            outcome = operator.refresh()
    except Exception as exc:
        # Recorded for any error (AWS's, a time limit), so no action is left "running".
        _finish(record, state=ActionState.FAILED, message=_failure_message(exc))
        raise
    state = (
        ActionState.SUCCEEDED
        if outcome.changed or record.action == ActionKind.REFRESH
        else ActionState.NOOP
    )
    message = outcome.message
    if state == ActionState.NOOP and record.attempts > 1:
        # A redelivery after a lost worker finds the target reached, most likely because the
        # lost attempt asked AWS before it could record it: "Nothing to do" would deny that
        # this action stopped (started) the database. Done, and saying how it was found.
        state = ActionState.SUCCEEDED
        message = (
            f"{outcome.message} when attempt {record.attempts} looked: an earlier attempt's"
            f" worker was lost, possibly after asking AWS to {record.action}"
        )
    _finish(record, state=state, outcome=outcome, message=message)
    log.line(f"done: {state.label.lower()} ({message})")
    return _summary(record)


def _finish(
    record: DatabaseAction, *, state: str, message: str, outcome: Outcome | None = None
) -> None:
    now = timezone.now()
    record.state = state
    record.message = message
    record.finished_at = now
    fields = ["state", "message", "finished_at"]
    if outcome is not None:
        record.status_before = outcome.status_before
        record.status_after = outcome.status_after
        record.wait_seconds = outcome.wait_seconds
        fields += ["status_before", "status_after", "wait_seconds"]
        ManagedDatabase.objects.filter(pk=record.database_id).update(
            status=outcome.status_after, status_checked_at=now
        )
    record.save(update_fields=fields)


def _failure_message(exc: Exception) -> str:
    if isinstance(exc, ApplicationError):  # refused, stuck, timed out: its own words
        return str(exc)
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"AWS error: {error.get('Code', '?')}: {error.get('Message', exc)}"
    return f"{exc.__class__.__name__}: {exc}"


def _summary(record: DatabaseAction) -> dict[str, Any]:
    return {
        "action": record.pk,
        "database": record.database_id,
        "kind": record.action,
        "state": record.state,
        "status_before": record.status_before,
        "status_after": record.status_after,
        # In tenths, as the log says it: the job page showed 0.012015962999953445.
        "wait_seconds": None if record.wait_seconds is None else round(record.wait_seconds, 1),
        "message": record.message,
    }
