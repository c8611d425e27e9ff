"""Writes for managed databases: registration and its schedule, actions, enforcement."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

from infra_tasks.rds.models import (
    FINISHED_ACTION_STATES,
    ActionKind,
    ActionState,
    DatabaseAction,
    DesiredState,
    Divergence,
    ManagedDatabase,
)
from infra_tasks.rds.operations import (
    ActionRefused,
    Limits,
    Operator,
    Outcome,
    StillTransitional,
    Target,
    WaitTimedOut,
    rds_client,
)
from infra_tasks.rds.schedule_times import CronSpec, previous_occurrence
from infra_tasks.rds.selectors import (
    database_cron_spec,
    database_effective_desired_state,
    database_status_matches,
)
from workers.enqueue import Requester, job_enqueue, new_task_id
from workers.joblog import JobLogWriter
from workers.models import RequesterKind
from workers.queues import QUEUES
from workers.selectors import staff_email_addresses

logger = logging.getLogger(__name__)

SCHEDULED_TASK = "infra_tasks.rds.tasks.run_scheduled_action"
ENFORCE_TASK = "infra_tasks.rds.tasks.enforce_schedules"
ENFORCE_SCHEDULE_NAME = "rds: enforce database schedules"
# A worker's clock may trail beat's by a little; the occurrence a firing serves is looked
# up this far ahead so it is never mistaken for the previous day's.
OCCURRENCE_TOLERANCE = timedelta(minutes=5)
FAILURES = (ActionRefused, StillTransitional, WaitTimedOut)


@dataclass(frozen=True)
class DatabaseSchedule:
    """The nightly stop and (optional) morning start of a database, in one named zone."""

    time_zone: str
    stop_at: time | None = time(22, 0)
    stop_days: str = "*"
    start_at: time | None = time(7, 0)
    start_days: str = "1-5"

    def spec(self, action: str) -> CronSpec | None:
        at, days = (
            (self.stop_at, self.stop_days)
            if action == ActionKind.STOP
            else (self.start_at, self.start_days)
        )
        return CronSpec.daily_at(at, days=days, time_zone=self.time_zone) if at else None


# --- registration and schedule ---------------------------------------------------------


@transaction.atomic
def managed_database_save(
    *, database: ManagedDatabase, schedule: DatabaseSchedule
) -> ManagedDatabase:
    """Save a managed database and keep its two beat schedules in step with `schedule`."""
    database.full_clean(exclude=["stop_task", "start_task"])
    database.save()
    database.stop_task = _periodic_task_sync(
        database, ActionKind.STOP, schedule.spec(ActionKind.STOP), database.stop_task
    )
    database.start_task = _periodic_task_sync(
        database, ActionKind.START, schedule.spec(ActionKind.START), database.start_task
    )
    database.save(update_fields=["stop_task", "start_task"])
    return database


def _periodic_task_sync(
    database: ManagedDatabase, action: str, spec: CronSpec | None, current: PeriodicTask | None
) -> PeriodicTask | None:
    if spec is None:
        if current is not None:
            current.delete()
        return None
    crontab, _ = CrontabSchedule.objects.get_or_create(
        minute=spec.minute,
        hour=spec.hour,
        day_of_week=spec.day_of_week,
        day_of_month=spec.day_of_month,
        month_of_year=spec.month_of_year,
        timezone=spec.time_zone,
    )
    label = "nightly stop" if action == ActionKind.STOP else "morning start"
    fields = {
        "name": database.schedule_name(action),
        "task": SCHEDULED_TASK,
        "crontab": crontab,
        "interval": None,
        "args": json.dumps([database.pk, str(action)]),
        "description": f"{label.capitalize()} of managed database {database.name}.",
    }
    if current is None:
        return PeriodicTask.objects.create(**fields)
    changed = [f for f, value in fields.items() if getattr(current, f) != value]
    if changed:
        for field in changed:
            setattr(current, field, fields[field])
        # save() (not update()) so beat's change tracking sees the new schedule.
        current.save()
    return current


@transaction.atomic
def managed_database_delete(*, database: ManagedDatabase) -> None:
    for task in (database.stop_task, database.start_task):
        if task is not None:
            task.delete()
    database.delete()


def system_periodic_tasks_ensure() -> None:
    """The enforcement pass, every RDS_ENFORCE_INTERVAL_SECONDS; run after each migrate."""
    interval, _ = IntervalSchedule.objects.get_or_create(
        every=settings.RDS_ENFORCE_INTERVAL_SECONDS, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.update_or_create(
        name=ENFORCE_SCHEDULE_NAME,
        defaults={"task": ENFORCE_TASK, "interval": interval, "crontab": None},
    )


# --- actions ---------------------------------------------------------------------------


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
    record = _action_enqueue(database, action, requester=requester, audit_object=database)
    return record


@transaction.atomic
def database_keep_running(
    *, database: ManagedDatabase, until: datetime, requester: Requester
) -> DatabaseAction:
    """Skip the nightly stop until `until`, and start the database now if it is stopped."""
    if until <= timezone.now():
        raise ValueError("keep running until must be in the future")
    record = database_action_request(
        database=database, action=ActionKind.START, requester=requester
    )
    ManagedDatabase.objects.filter(pk=database.pk).update(keep_running_until=until)
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


def database_scheduled_run(
    *, database_id: int, action: str, task_id: str, now: datetime | None = None, client: Any = None
) -> dict[str, Any] | None:
    """What a schedule firing does: once per occurrence, honouring keep-running-until."""
    now = now or timezone.now()
    redelivered = DatabaseAction.objects.filter(task_id=task_id).values_list("pk", flat=True)
    if redelivered:
        # This very firing was under way when its worker died: finish it, not skip it.
        return database_action_execute(action_id=redelivered[0], task_id=task_id, client=client)
    with transaction.atomic():
        database = ManagedDatabase.objects.select_for_update().filter(pk=database_id).first()
        if database is None:
            return None
        spec = database_cron_spec(database=database, action=action)
        occurrence = previous_occurrence(spec, now + OCCURRENCE_TOLERANCE) if spec else None
        field = "last_stop_occurrence" if action == ActionKind.STOP else "last_start_occurrence"
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
            requester_kind=RequesterKind.SCHEDULE,
            requester_label=database.schedule_name(action),
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
        if occurrence is not None:
            log.line(f"schedule occurrence {occurrence:%Y-%m-%d %H:%M} UTC")
        if kept:
            log.line(f"{database.name}: {record.message}; nightly stop skipped")
            return _summary(record)
        return _perform(record, log=log, client=client)


def _perform(record: DatabaseAction, *, log: JobLogWriter, client: Any) -> dict[str, Any]:
    database = record.database
    operator = Operator(
        client if client is not None else rds_client(database.region),
        Target(database.kind, database.identifier),
        log=log,
        limits=_limits(),
    )
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
    _finish(record, state=state, outcome=outcome, message=outcome.message)
    log.line(f"done: {state.label.lower()} ({outcome.message})")
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
    if isinstance(exc, FAILURES):
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
        "wait_seconds": record.wait_seconds,
        "message": record.message,
    }


def _limits() -> Limits:
    return Limits(
        retry_attempts=settings.RDS_RETRY_ATTEMPTS,
        retry_base_seconds=settings.RDS_RETRY_BASE_SECONDS,
        retry_max_seconds=settings.RDS_RETRY_MAX_SECONDS,
        throttle_attempts=settings.RDS_THROTTLE_ATTEMPTS,
        poll_seconds=settings.RDS_POLL_SECONDS,
        wait_timeout_seconds=settings.RDS_WAIT_TIMEOUT_SECONDS,
    )


# --- enforcement -----------------------------------------------------------------------


def databases_enforce(
    *, task_id: str, now: datetime | None = None, client: Any = None
) -> dict[str, Any]:
    """Compare desired with actual state; put back what drifted; tell staff what stays off."""
    now = now or timezone.now()
    report: dict[str, Any] = {"checked": 0, "diverged": [], "notified": [], "errors": []}
    with JobLogWriter(task_id) as log:
        for database in ManagedDatabase.objects.filter(enforce=True).order_by("name"):
            report["checked"] += 1
            try:
                status = Operator(
                    client if client is not None else rds_client(database.region),
                    Target(database.kind, database.identifier),
                    log=log,
                    limits=_limits(),
                ).status()
            except Exception as exc:  # one unreachable database must not stop the pass
                log.line(f"{database.name}: could not read its state: {exc}")
                report["errors"].append(database.name)
                continue
            outcome = _enforce_one(database_id=database.pk, status=status, now=now)
            log.line(
                f"{database.name}: {status}, should be {outcome['desired']}: {outcome['verdict']}"
            )
            if outcome["verdict"] != "in step":
                report["diverged"].append(database.name)
            if outcome["verdict"] == NOTIFIED:
                # Mail goes after the divergence is committed: an SMTP error is reported here
                # and must neither undo what was recorded nor stop the pass.
                try:
                    _notify_staff(database, desired=outcome["desired"], status=status)
                except Exception as exc:
                    log.line(
                        f"{database.name}: could not e-mail staff, next pass tries again: {exc}"
                    )
                    report["errors"].append(database.name)
                    Divergence.objects.filter(database=database, resolved_at__isnull=True).update(
                        notified_at=None
                    )
                else:
                    report["notified"].append(database.name)
    return report


NOTIFIED = "still off after a retry; staff notified"


@transaction.atomic
def _enforce_one(*, database_id: int, status: str, now: datetime) -> dict[str, str]:
    database = ManagedDatabase.objects.select_for_update().get(pk=database_id)
    database.status = status
    database.status_checked_at = now
    database.save(update_fields=["status", "status_checked_at"])
    desired = database_effective_desired_state(database=database, now=now)
    open_divergence = Divergence.objects.filter(database=database, resolved_at__isnull=True).first()
    if database_status_matches(desired=desired, status=status):
        if open_divergence is not None:
            open_divergence.resolved_at = now
            open_divergence.save(update_fields=["resolved_at"])
        return {"desired": desired, "verdict": "in step"}

    # An action older than the infra queue's hard limit is not coming back (lost message,
    # killed worker): it must not keep enforcement quiet forever.
    busy = DatabaseAction.objects.filter(
        database=database,
        state__in=[ActionState.QUEUED, ActionState.RUNNING],
        created_at__gte=now - timedelta(seconds=QUEUES["infra"].time_limit),
    ).exists()
    if open_divergence is None:
        open_divergence = Divergence.objects.create(
            database=database, desired_state=desired, observed_status=status
        )
        verdict = "diverged; putting it back"
    else:
        open_divergence.checks += 1
        open_divergence.observed_status = status
        if busy:
            verdict = "still off; a correction is under way"
        elif open_divergence.notified_at is None:
            # The correction has run and the database is still off: people must look (the
            # caller sends the mail once this is committed).
            open_divergence.notified_at = now
            verdict = NOTIFIED
        else:
            verdict = "still off"
    if not busy:
        record = _corrective_action(database, desired)
        open_divergence.corrective_task_id = record.task_id
    open_divergence.save()
    return {"desired": desired, "verdict": verdict}


def _corrective_action(database: ManagedDatabase, desired: str) -> DatabaseAction:
    action = ActionKind.STOP if desired == DesiredState.STOPPED else ActionKind.START
    return _action_enqueue(database, action, requester=Requester.system("rds enforcement"))


def _action_enqueue(
    database: ManagedDatabase, action: str, *, requester: Requester, audit_object: Any = None
) -> DatabaseAction:
    """Record an action and queue its job, in the caller's transaction."""
    from infra_tasks.rds.tasks import execute_database_action

    record = DatabaseAction.objects.create(
        database=database,
        action=action,
        requester_kind=requester.kind,
        requester_label=requester.label,
        requested_by_id=requester.user_id,
        task_id=new_task_id(),
    )
    job_enqueue(
        execute_database_action,
        requester=requester,
        args=[record.pk],
        audit_object=audit_object,
        task_id=record.task_id,
    )
    return record


def _notify_staff(database: ManagedDatabase, *, desired: str, status: str) -> None:
    since = Divergence.objects.filter(database=database, resolved_at__isnull=True).first()
    if since is None:
        return
    recipients = staff_email_addresses()
    if not recipients:
        logger.warning("no staff e-mail address to tell that %s is %s", database.name, status)
        return
    send_mail(
        subject=f"[opsqueue] {database.name} is {status}, should be {desired}",
        message=(
            f"The managed database {database} is {status} but its schedule says it should be "
            f"{desired}. Enforcement first saw this at {since.detected_at:%Y-%m-%d %H:%M %Z} "
            f"and tried to put it back; it is still off.\n\n"
            f"Last corrective job: {since.corrective_task_id or 'none'}"
        ),
        from_email=None,
        recipient_list=recipients,
        fail_silently=False,
    )
