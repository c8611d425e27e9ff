"""Recurring jobs: django-celery-beat's schedules as the Jobs home lists them, and "Run now".

"Run now" goes the way every job goes (job_enqueue): a PENDING record, the person as its
requester, an audit entry on the schedule, sending after commit. It does not touch the
schedule: the next run stays when it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from workers import families
from workers.enqueue import Requester, job_enqueue
from workers.errors import ApplicationError
from workers.job_filters import registered_task


class RunNowRefused(ApplicationError, ValueError):
    """The schedule cannot be run now; the message says why."""


@dataclass(frozen=True)
class RecurringTask:
    pk: int
    name: str
    task: str
    when: str  # "every 60 seconds", "At 02:00 AM, only on Monday"
    time_zone: str
    enabled: bool
    last_run_at: datetime | None
    next_run_at: datetime | None


def recurring_tasks() -> list[RecurringTask]:
    rows = PeriodicTask.objects.select_related("interval", "crontab", "clocked", "solar")
    return [
        RecurringTask(
            pk=pt.pk,
            name=pt.name,
            task=pt.task,
            when=_when(pt),
            time_zone=str(pt.crontab.timezone) if pt.crontab else settings.CELERY_TIMEZONE,
            enabled=pt.enabled,
            last_run_at=pt.last_run_at,
            next_run_at=_next_run(pt) if pt.enabled else None,
        )
        for pt in rows.order_by("name")
    ]


def _when(pt: PeriodicTask) -> str:
    if pt.crontab is not None:
        return (
            f"{pt.crontab.human_readable} (cron {pt.crontab.minute} {pt.crontab.hour} "
            f"{pt.crontab.day_of_month} {pt.crontab.month_of_year} {pt.crontab.day_of_week})"
        )
    if pt.interval is not None:
        return str(pt.interval)
    if pt.clocked is not None:
        return f"once, at {timezone.localtime(pt.clocked.clocked_time):%Y-%m-%d %H:%M %Z}"
    if pt.solar is not None:
        return str(pt.solar)
    return "no schedule"


def _next_run(pt: PeriodicTask) -> datetime | None:
    """When beat will next send it: the schedule's own estimate from its last run."""
    if pt.clocked is not None:
        return None if pt.one_off and pt.last_run_at else pt.clocked.clocked_time
    try:
        schedule: Any = pt.schedule
        last = pt.last_run_at or pt.start_time or timezone.now()
        remaining = schedule.remaining_estimate(last)
    except (AttributeError, ValueError, TypeError):
        return None
    # The estimate is from the clock's now; an overdue run goes on beat's next tick.
    clock = timezone.now()
    return max(clock + remaining, clock)


@transaction.atomic
def recurring_task_run_now(*, periodic_task_id: int, user: Any) -> str:
    """Queue a schedule's task now with its arguments; the new job's task id."""
    pt = PeriodicTask.objects.filter(pk=periodic_task_id).first()
    if pt is None:
        raise RunNowRefused("That schedule no longer exists.")
    # The one permission rule (workers/families.py): starting a family's job needs that
    # family's operate permission, whichever button starts it.
    if not families.job_startable(user, pt.task):
        raise RunNowRefused(f"You may not start the jobs of {pt.name}.")
    task = registered_task(pt.task)
    if task is None:
        raise RunNowRefused(f"No task {pt.task} in this version of the code.")
    try:
        args = json.loads(pt.args or "[]")
        kwargs = json.loads(pt.kwargs or "{}")
    except ValueError as exc:
        raise RunNowRefused(f"The schedule's arguments are not JSON: {exc}") from exc
    return job_enqueue(
        task,
        requester=Requester.for_user(user),
        args=args,
        kwargs=kwargs,
        queue=pt.queue or None,
        audit_object=pt,
    )
