"""Periodic jobs, declared once and written to django-celery-beat's tables after each migrate.

Each app declares its beat entries in `<app>/jobs.py`:

    periodic_job_declare(
        PeriodicJob("Terraform lost runs", RUNS_MARK_LOST, every=30, description="…"),
        PeriodicJob("dashboard: refresh ECS services", ECS_SERVICES_REFRESH,
                    every=lambda: settings.ECS_REFRESH_INTERVAL_SECONDS),
    )

`periodic_jobs_sync` (connected to `post_migrate`, so it runs on each deploy and after a
test database is flushed) makes each row say what is declared. The task and description
always follow the declaration, which is how a renamed task reaches existing rows. A schedule
given as a setting (a callable) follows the setting; a fixed one is only the first value,
so a schedule an operator changed in the beat admin survives deploys. `enabled` is the
operator's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from workers.job_registry import JobSpec


@dataclass(frozen=True)
class PeriodicJob:
    name: str  # PeriodicTask.name: what the beat admin and the job records show
    job: JobSpec
    every: int | Callable[[], int] | None = None  # seconds
    crontab: dict[str, str] | None = None  # minute, hour, … (UTC); unset fields are "*"
    description: str = ""
    args: tuple[Any, ...] = field(default=())

    def __post_init__(self) -> None:
        if (self.every is None) == (self.crontab is None):
            raise ValueError(f"{self.name}: give either every= or crontab=")


_DECLARED: dict[str, PeriodicJob] = {}


def periodic_job_declare(*jobs: PeriodicJob) -> None:
    for job in jobs:
        known = _DECLARED.get(job.name)
        if known is not None and known != job:
            raise ValueError(f"periodic job {job.name!r} is declared twice")
        _DECLARED[job.name] = job


def declared_periodic_jobs() -> list[PeriodicJob]:
    return list(_DECLARED.values())


@transaction.atomic
def periodic_jobs_sync(**signal_kwargs: Any) -> int:
    """Create or update the PeriodicTask row of each declared job; return how many changed."""
    from workers.jobs_discovery import jobs_modules_import

    jobs_modules_import()
    return sum(_sync(job) for job in _DECLARED.values())


def _sync(job: PeriodicJob) -> bool:
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask

    row = PeriodicTask.objects.filter(name=job.name).first()
    follows_setting = callable(job.every)
    wanted: dict[str, Any] = {
        "task": job.job.name,
        "description": job.description,
        "args": json.dumps(list(job.args)),
    }
    if row is None or follows_setting:
        if job.every is not None:
            seconds = job.every() if callable(job.every) else job.every
            wanted["interval"], _ = IntervalSchedule.objects.get_or_create(
                every=seconds, period=IntervalSchedule.SECONDS
            )
            wanted["crontab"] = None
        else:
            assert job.crontab is not None
            fields = {
                "minute": "*",
                "hour": "*",
                "day_of_week": "*",
                "day_of_month": "*",
                "month_of_year": "*",
                **job.crontab,
            }
            wanted["crontab"], _ = CrontabSchedule.objects.get_or_create(**fields, timezone="UTC")
            wanted["interval"] = None
    if row is None:
        PeriodicTask.objects.create(name=job.name, **wanted)
        return True
    changed = [name for name, value in wanted.items() if getattr(row, name) != value]
    for name in changed:
        setattr(row, name, wanted[name])
    if changed:
        row.save()  # save(), not update(): beat's change tracking must see it
    return bool(changed)
