"""A managed database's registration, its two beat rows (nightly stop, morning start), and
keeping it running past its nightly stop.

The rows name `jobs.DATABASE_SCHEDULED_RUN`; rows written under the task's former name still
run (the old name stays registered). The schedule lives in django-celery-beat only, so an
edit made in the beat admin is what the database follows (selectors.database_cron_spec).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time

from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from infra_tasks.rds import jobs
from infra_tasks.rds.models import ActionKind, DatabaseAction, ManagedDatabase
from infra_tasks.rds.schedule_times import CronSpec
from infra_tasks.rds.services.actions import database_action_request
from workers.enqueue import Requester
from workers.errors import ApplicationError


class KeepRunningRefused(ApplicationError, ValueError):
    """The keep-running time asked for has already passed."""


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
        "name": f"rds: {label} of {database.name}",
        "task": jobs.DATABASE_SCHEDULED_RUN.name,
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


@transaction.atomic
def database_keep_running(
    *, database: ManagedDatabase, until: datetime, requester: Requester
) -> DatabaseAction:
    """Skip the nightly stop until `until`, and start the database now if it is stopped."""
    if until <= timezone.now():
        raise KeepRunningRefused("keep running until must be in the future")
    record = database_action_request(
        database=database, action=ActionKind.START, requester=requester
    )
    ManagedDatabase.objects.filter(pk=database.pk).update(keep_running_until=until)
    return record
