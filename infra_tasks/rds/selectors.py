"""Reads for managed databases: their schedule, effective desired state, next change."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from infra_tasks.rds.models import ActionKind, DatabaseAction, DesiredState, ManagedDatabase
from infra_tasks.rds.schedule_times import CronSpec, next_occurrence
from workers.display import duration_text
from workers.subjects import JobSubject

STOPPED_STATUSES = frozenset({"stopped", "stopping"})


def periodic_task_cron_spec(task: PeriodicTask | None) -> CronSpec | None:
    """The cron schedule a beat entry fires on; None when disabled or not a crontab."""
    if task is None or not task.enabled or task.crontab is None:
        return None
    crontab = task.crontab
    return CronSpec(
        crontab.minute,
        crontab.hour,
        crontab.day_of_week,
        crontab.day_of_month,
        crontab.month_of_year,
        str(crontab.timezone),
    )


def database_cron_spec(*, database: ManagedDatabase, action: str) -> CronSpec | None:
    task = database.stop_task if action == ActionKind.STOP else database.start_task
    if task is not None:
        # The row may have been edited in the beat admin since this object was loaded.
        task = PeriodicTask.objects.select_related("crontab").filter(pk=task.pk).first()
    return periodic_task_cron_spec(task)


def database_schedule_summary(*, database: ManagedDatabase) -> str:
    """The schedule as beat has it, in words: "stop at 22:00 every day; start at 07:00 on
    days 1-5 (Europe/Warsaw)"; a part that is off says so."""
    parts = []
    zones = set()
    for action, verb in ((ActionKind.STOP, "stop"), (ActionKind.START, "start")):
        spec = database_cron_spec(database=database, action=action)
        if spec is None:
            parts.append(f"no {verb}")
            continue
        zones.add(spec.time_zone)
        at = (
            f"{int(spec.hour):02d}:{int(spec.minute):02d}"
            if spec.hour.isdigit() and spec.minute.isdigit()
            else f"cron {spec.minute} {spec.hour}"
        )
        days = "every day" if spec.day_of_week == "*" else f"on days {spec.day_of_week}"
        parts.append(f"{verb} at {at} {days}")
    zone = f" ({', '.join(sorted(zones))})" if zones else ""
    return "; ".join(parts) + zone


def database_effective_desired_state(*, database: ManagedDatabase, now: datetime) -> str:
    if database.keep_running_until is not None and database.keep_running_until > now:
        return DesiredState.RUNNING
    return database.desired_state


def database_status_matches(*, desired: str, status: str) -> bool:
    stopped = status in STOPPED_STATUSES
    return stopped if desired == DesiredState.STOPPED else not stopped


@dataclass(frozen=True)
class ScheduledChange:
    action: str
    at: datetime
    time_zone: str  # the schedule's, for showing the local time beside UTC
    skipped_by_override: bool


def database_next_change(
    *, database: ManagedDatabase, now: datetime, desired: str | None = None
) -> ScheduledChange | None:
    """The next schedule firing, stop or start, as the scheduler will fire it. Given the
    state the database is held in now (`desired`), a firing that would leave it so (the
    nightly stop of a database stopped by hand) is passed over for the one that changes it."""
    candidates: list[tuple[datetime, str, str]] = []
    for kind, task, target in (
        (ActionKind.STOP, database.stop_task, DesiredState.STOPPED),
        (ActionKind.START, database.start_task, DesiredState.RUNNING),
    ):
        spec = periodic_task_cron_spec(task)
        if spec is None or target == desired:
            continue
        at = next_occurrence(spec, now)
        if at is not None:
            candidates.append((at, str(kind), spec.time_zone))
    if not candidates:
        return None
    at, action, time_zone = min(candidates)
    skipped = action == ActionKind.STOP and (
        database.keep_running_until is not None and database.keep_running_until > at
    )
    return ScheduledChange(action=action, at=at, time_zone=time_zone, skipped_by_override=skipped)


def database_action_job_subject(task_id: str) -> JobSubject | None:
    """The database action a job carries out, for the job's page."""
    record = DatabaseAction.objects.select_related("database").filter(task_id=task_id).first()
    if record is None:
        return None
    message = record.message
    if record.status_after:
        message = (
            f"{record.status_before or '?'} → {record.status_after}"
            + (
                f" (AWS took {duration_text(record.wait_seconds)})"
                if record.wait_seconds is not None
                else ""
            )
            + (f"; {message}" if message else "")
        )
    return JobSubject(
        label=f"{record.get_action_display()} {record.database.name} (action #{record.pk})",
        url=reverse("admin:rds_databaseaction_change", args=[record.pk]),
        state=record.get_state_display(),
        message=message,
    )
