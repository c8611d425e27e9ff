"""Reads for the infrastructure dashboard: the database only, never AWS."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db.models import QuerySet

from infra_tasks.dashboard.models import EcsServiceSnapshot
from infra_tasks.rds.models import ManagedDatabase
from infra_tasks.rds.selectors import (
    ScheduledChange,
    database_effective_desired_state,
    database_next_change,
    database_status_matches,
)


@dataclass(frozen=True)
class DatabaseRow:
    database: ManagedDatabase
    desired_state: str
    in_step: bool | None  # None: state not read yet
    next_change: ScheduledChange | None


def dashboard_databases(*, now: datetime) -> list[DatabaseRow]:
    rows = []
    for database in ManagedDatabase.objects.select_related(
        "stop_task__crontab", "start_task__crontab"
    ).order_by("name"):
        desired = database_effective_desired_state(database=database, now=now)
        rows.append(
            DatabaseRow(
                database=database,
                desired_state=desired,
                in_step=(
                    database_status_matches(desired=desired, status=database.status)
                    if database.status
                    else None
                ),
                next_change=database_next_change(database=database, now=now, desired=desired),
            )
        )
    return rows


def dashboard_ecs_services() -> QuerySet[EcsServiceSnapshot]:
    return EcsServiceSnapshot.objects.filter(cluster=settings.ECS_CLUSTER)
