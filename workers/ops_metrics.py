"""Figures for the operations page and /ops/metrics.json: queue latency, runtime percentiles,
orphaned jobs. Each is one indexed range read (status + date_created, date_done), so they
stay cheap on a large jobs table.

- Queue latency: the age of the oldest job still waiting (PENDING) on each queue, i.e. how
  long the next job picked up will have waited. Zero when nothing waits.
- Runtime percentiles: p50 / p95 / max of finished jobs' run time (date_started →
  date_done) per task (a task's runs under a former name counted with it), over the last
  hour and the last day; PostgreSQL's percentile_cont,
  computed the same way in Python on other databases (SQLite in development).
- Orphaned jobs: started on a worker whose heartbeat stopped (workers/job_actions.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import connection
from django.db.models import Aggregate, Case, CharField, F, FloatField, Min, Value, When
from django_celery_results.models import TaskResult

from workers.job_actions import lost_condition
from workers.job_registry import canonical_name, declared_specs
from workers.models import Job, QueuePause
from workers.queues import QUEUES

FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
ORPHANS_SHOWN = 20
# How far back a waiting job counts: older PENDING rows are records whose message is gone.
WAITING_LOOKBACK = timedelta(days=7)


@dataclass(frozen=True)
class QueueLatency:
    queue: str
    oldest_waiting_seconds: float  # 0 when nothing waits
    paused_by: str  # '' when not paused
    paused_at: datetime | None


@dataclass(frozen=True)
class RuntimePercentiles:
    task_name: str
    period: str  # "hour" or "day"
    runs: int
    p50: float
    p95: float
    max: float


def queue_latencies(*, now: datetime) -> list[QueueLatency]:
    pauses = {p.queue: p for p in QueuePause.objects.all()}
    waiting = TaskResult.objects.filter(
        status="PENDING", date_created__gte=now - WAITING_LOOKBACK
    ).values("task_id")
    # One query for every queue: the waiting jobs' Job rows, oldest per queue.
    oldest_by_queue = dict(
        Job.objects.filter(task_id__in=waiting)
        .values("queue")
        .annotate(oldest=Min("created_at"))
        .values_list("queue", "oldest")
    )
    rows = []
    for queue in QUEUES:
        started = oldest_by_queue.get(queue)
        pause = pauses.get(queue)
        rows.append(
            QueueLatency(
                queue=queue,
                oldest_waiting_seconds=max((now - started).total_seconds(), 0.0)
                if started
                else 0.0,
                paused_by=pause.paused_by_label if pause else "",
                paused_at=pause.paused_at if pause else None,
            )
        )
    return rows


class _PercentileCont(Aggregate):
    """PostgreSQL: percentile_cont(f) WITHIN GROUP (ORDER BY run time in seconds)."""

    function = "percentile_cont"
    template = (
        "%(function)s(%(fraction)s) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (%(expressions)s)))"
    )
    output_field = FloatField()

    def __init__(self, expression: Any, *, fraction: float) -> None:
        super().__init__(expression, fraction=float(fraction))


def runtime_percentiles(*, now: datetime) -> list[RuntimePercentiles]:
    rows: list[RuntimePercentiles] = []
    for period, span in (("hour", timedelta(hours=1)), ("day", timedelta(days=1))):
        finished = TaskResult.objects.filter(
            date_done__gte=now - span, status__in=FINISHED, date_started__isnull=False
        )
        rows.extend(_percentiles(finished, period))
    return sorted(rows, key=lambda r: (r.period != "hour", -r.p95, r.task_name))


def current_task_name() -> Any:
    """The row's task name, a former name read as the task's current one (one CASE)."""
    renames = [
        When(task_name__in=spec.old_names, then=Value(spec.name))
        for spec in declared_specs()
        if spec.old_names
    ]
    if not renames:
        return F("task_name")
    return Case(*renames, default=F("task_name"), output_field=CharField())


def _percentiles(finished: Any, period: str) -> list[RuntimePercentiles]:
    from django.db.models import Count, DurationField, ExpressionWrapper, Max

    duration = ExpressionWrapper(F("date_done") - F("date_started"), output_field=DurationField())
    if connection.vendor == "postgresql":
        grouped = (
            finished.annotate(task=current_task_name())
            .values("task")
            .annotate(
                runs=Count("id"),
                p50=_PercentileCont(duration, fraction=0.5),
                p95=_PercentileCont(duration, fraction=0.95),
                longest=Max(duration),
            )
            .order_by("task")
        )
        return [
            RuntimePercentiles(
                g["task"] or "?",
                period,
                g["runs"],
                g["p50"],
                g["p95"],
                g["longest"].total_seconds(),
            )
            for g in grouped
        ]
    by_task: dict[str, list[float]] = {}
    for name, started, done in finished.values_list("task_name", "date_started", "date_done"):
        by_task.setdefault(canonical_name(name or "?"), []).append((done - started).total_seconds())
    return [
        RuntimePercentiles(
            name,
            period,
            len(values),
            percentile(values, 0.5),
            percentile(values, 0.95),
            max(values),
        )
        for name, values in sorted(by_task.items())
    ]


def percentile(values: list[float], fraction: float) -> float:
    """Linear interpolation between closest ranks: what percentile_cont computes."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def orphaned_jobs(*, now: datetime, limit: int = ORPHANS_SHOWN) -> tuple[int, list[TaskResult]]:
    """Jobs started on workers that are gone: how many (last week), and the latest few."""
    orphans = TaskResult.objects.filter(date_created__gte=now - WAITING_LOOKBACK).filter(
        lost_condition(now=now)
    )
    return orphans.count(), list(orphans.order_by("-date_created")[:limit])
