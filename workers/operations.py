"""The operations page: queues, workers, job states, slow and failing tasks, from the database.

It works when Flower, Redis or AWS are down: queue depths come from the periodic
`record_queue_depths` task, workers from their heartbeat rows, everything else from
TaskResult. Every TaskResult read is a range on an indexed column (date_created or
date_done) over at most a day, so the page stays fast however large the table grows.
What the page reads is here; its views are in workers/operations_views.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    ReadTimeoutError,
)
from django.conf import settings
from django.db.models import Avg, Count, DurationField, ExpressionWrapper, F, Max, Q
from django.db.models.functions import TruncHour
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers.broker import dead_letter_queue_name, missing_queue_text
from workers.charts import Bucket, Chart, timeline_chart
from workers.dead_letters import (
    DeadLetter,
    dead_letters_list,
    sqs_client,
)
from workers.models import QueueDepth, WorkerHeartbeat
from workers.monitoring import monitor_url, redacted_url
from workers.ops_metrics import (
    QueueLatency,
    RuntimePercentiles,
    current_task_name,
    orphaned_jobs,
    queue_latencies,
    runtime_percentiles,
)
from workers.outbox import broker_health
from workers.queues import QUEUES

STATES = ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
FINISHED = ("SUCCESS", "FAILURE", "REVOKED")
# A queue sample older than this is shown as stale (the periodic task runs every minute).
QUEUE_SAMPLE_STALE_AFTER = timedelta(minutes=5)
# A worker counts as online while its heartbeat is younger than this many intervals.
HEARTBEAT_MISSES_ALLOWED = 3
TOP_TASKS = 8

DURATION = ExpressionWrapper(F("date_done") - F("date_started"), output_field=DurationField())


@dataclass(frozen=True)
class StateCount:
    state: str
    last_hour: int
    last_day: int


@dataclass(frozen=True)
class QueueRow:
    depth: QueueDepth
    stale: bool


@dataclass(frozen=True)
class WorkerRow:
    heartbeat: WorkerHeartbeat
    online: bool
    # Online, but its SQS consumer has not received for longer than polling allows.
    stalled: bool = False
    # Its queues whose polls have not worked for that long (all of them if stalled).
    stalled_queues: tuple[str, ...] = ()

    @property
    def consuming(self) -> bool:
        """A worker is alive when it consumes, not when a thread beats: online and not
        stalled. The one rule the page, the metrics and the job pages' warnings follow."""
        return self.online and not self.stalled

    @property
    def consuming_queues(self) -> list[str]:
        """The queues it takes jobs from now: a queue whose polls fail (its SQS queue
        deleted) is not consumed, though the worker's other polls work."""
        if not self.consuming:
            return []
        return [queue for queue in self.heartbeat.queues if queue not in self.stalled_queues]


@dataclass(frozen=True)
class TaskStat:
    task_name: str
    runs: int
    mean_seconds: float
    max_seconds: float


@dataclass(frozen=True)
class FailingTask:
    task_name: str
    failures: int
    last_failed_at: datetime


def job_state_counts(*, now: datetime) -> list[StateCount]:
    """Jobs created in the last hour and day, per state (one indexed range on date_created)."""
    rows = (
        TaskResult.objects.filter(date_created__gte=now - timedelta(days=1))
        .values("status")
        .annotate(
            day=Count("id"),
            hour=Count("id", filter=Q(date_created__gte=now - timedelta(hours=1))),
        )
    )
    counts = {row["status"]: (row["hour"], row["day"]) for row in rows}
    states = [*STATES, *sorted(set(counts) - set(STATES))]
    return [StateCount(s, *counts.get(s, (0, 0))) for s in states]


def _finished_since(since: datetime) -> Any:
    # date_done is stamped on every save (auto_now), PENDING and STARTED rows included.
    return TaskResult.objects.filter(date_done__gte=since, status__in=FINISHED)


def slowest_tasks(*, now: datetime, limit: int = TOP_TASKS) -> list[TaskStat]:
    rows = (
        _finished_since(now - timedelta(days=1))
        .filter(date_started__isnull=False)
        .annotate(task=current_task_name())
        .values("task")
        .annotate(runs=Count("id"), mean=Avg(DURATION), longest=Max(DURATION))
        .order_by("-mean")[:limit]
    )
    return [
        TaskStat(
            r["task"] or "?",
            r["runs"],
            r["mean"].total_seconds(),
            r["longest"].total_seconds(),
        )
        for r in rows
        if r["mean"] is not None
    ]


def failing_tasks(*, now: datetime, limit: int = TOP_TASKS) -> list[FailingTask]:
    rows = (
        TaskResult.objects.filter(date_done__gte=now - timedelta(days=1), status="FAILURE")
        .annotate(task=current_task_name())
        .values("task")
        .annotate(failures=Count("id"), last=Max("date_done"))
        .order_by("-failures", "-last")[:limit]
    )
    return [FailingTask(r["task"] or "?", r["failures"], r["last"]) for r in rows]


def job_timeline(*, now: datetime, hours: int = 24) -> list[Bucket]:
    """Finished jobs per hour over the last `hours`: counts, failures, mean/max duration."""
    start = (now - timedelta(hours=hours - 1)).replace(minute=0, second=0, microsecond=0)
    zone = timezone.get_current_timezone()
    rows = (
        _finished_since(start)
        .annotate(hour=TruncHour("date_done", tzinfo=zone))
        .values("hour")
        .annotate(
            finished=Count("id"),
            failed=Count("id", filter=Q(status="FAILURE")),
            mean=Avg(DURATION),
            longest=Max(DURATION),
        )
    )
    by_hour = {row["hour"]: row for row in rows}
    buckets = []
    for i in range(hours):
        hour = timezone.localtime(start + timedelta(hours=i), zone)
        row = by_hour.get(hour, {})
        buckets.append(
            Bucket(
                label=hour.strftime("%H:00"),
                finished=row.get("finished", 0),
                failed=row.get("failed", 0),
                mean_seconds=row["mean"].total_seconds() if row.get("mean") else None,
                max_seconds=row["longest"].total_seconds() if row.get("longest") else None,
            )
        )
    return buckets


def queue_rows(*, now: datetime) -> list[QueueRow]:
    return [
        QueueRow(depth, stale=depth.sampled_at < now - QUEUE_SAMPLE_STALE_AFTER)
        for depth in QueueDepth.objects.all()
    ]


def worker_rows(*, now: datetime) -> list[WorkerRow]:
    online_since = now - timedelta(
        seconds=settings.WORKER_HEARTBEAT_SECONDS * HEARTBEAT_MISSES_ALLOWED
    )
    receiving_since = now - timedelta(seconds=settings.WORKER_CONSUMER_STALLED_SECONDS)
    rows = []
    for heartbeat in WorkerHeartbeat.objects.filter(last_seen_at__gte=now - timedelta(days=1)):
        online = heartbeat.last_seen_at >= online_since
        # A worker that never received counts from its start.
        proof = heartbeat.last_receive_at or heartbeat.started_at
        stalled = online and proof < receiving_since
        stalled_queues = tuple(
            queue
            for queue in heartbeat.queues
            if stalled
            or (
                online
                and (queue_last_receive(heartbeat, queue) or heartbeat.started_at) < receiving_since
            )
        )
        rows.append(
            WorkerRow(heartbeat, online=online, stalled=stalled, stalled_queues=stalled_queues)
        )
    return rows


def queue_last_receive(heartbeat: WorkerHeartbeat, queue: str) -> datetime | None:
    """When the worker's poll of `queue` last worked; its last receive of any queue for a
    row without per-queue times (written by an older worker)."""
    if not heartbeat.queue_receives:
        return heartbeat.last_receive_at
    at = heartbeat.queue_receives.get(queue)
    return datetime.fromisoformat(at) if at else None


def queues_without_consumer(*, now: datetime) -> dict[str, datetime | None]:
    """The project's queues no worker consumes now (worker_rows' rule), each with when a
    worker's consumer last received from it (None: no worker of the last day read it).
    One query on the heartbeat rows: cheap enough for a job page's every poll."""
    rows = worker_rows(now=now)
    consumed = {queue for row in rows for queue in row.consuming_queues}
    idle: dict[str, datetime | None] = {}
    for queue in QUEUES:
        if queue in consumed:
            continue
        receives = [
            at
            for row in rows
            if queue in row.heartbeat.queues and (at := queue_last_receive(row.heartbeat, queue))
        ]
        idle[queue] = max(receives, default=None)
    return idle


@dataclass(frozen=True)
class IdleQueue:
    """A queue jobs wait on while no worker consumes it (not a paused one: that has its own
    line), for the Jobs home's warning."""

    queue: str
    last_consumed_at: datetime | None


def idle_queues_with_waiting_jobs(*, now: datetime | None = None) -> list[IdleQueue]:
    now = now or timezone.now()
    idle = queues_without_consumer(now=now)
    if not idle:
        return []
    return [
        IdleQueue(row.queue, idle[row.queue])
        for row in queue_latencies(now=now)
        if row.queue in idle and row.oldest_waiting_seconds > 0 and not row.paused_by
    ]


@dataclass(frozen=True)
class Operations:
    now: datetime
    queues: list[QueueRow]
    workers: list[WorkerRow]
    states: list[StateCount]
    slowest: list[TaskStat]
    failing: list[FailingTask]
    chart: Chart
    monitor_url: str
    latencies: list[QueueLatency]
    percentiles: list[RuntimePercentiles]
    orphan_count: int
    orphans: list[TaskResult]


def operations_get(*, now: datetime | None = None) -> Operations:
    now = now or timezone.now()
    orphan_count, orphans = orphaned_jobs(now=now)
    return Operations(
        now=now,
        queues=queue_rows(now=now),
        workers=worker_rows(now=now),
        states=job_state_counts(now=now),
        slowest=slowest_tasks(now=now),
        failing=failing_tasks(now=now),
        chart=timeline_chart(job_timeline(now=now)),
        monitor_url=redacted_url(monitor_url()),
        latencies=queue_latencies(now=now),
        percentiles=runtime_percentiles(now=now),
        orphan_count=orphan_count,
        orphans=orphans,
    )


@dataclass(frozen=True)
class DeadLetterSection:
    queue: str
    letters: list[DeadLetter]
    error: str = ""


# SQS not answering at all (down, hanging), as opposed to answering with an error.
SQS_SILENT = (ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError)


def dead_letter_sections(queues: list[QueueRow]) -> list[DeadLetterSection]:
    """The messages of every dead-letter queue whose last sample counted any: SQS is asked
    only about those, so the page costs no AWS call while every dead-letter queue is empty.

    Asked with a page's short timeouts; once SQS has not answered for one queue the others
    are not asked (each would wait as long), so a hanging SQS costs the page seconds, not
    minutes."""
    client = sqs_client(for_page=True)
    silent = ""
    sections = []
    for row in queues:
        queue = row.depth.queue
        if not row.depth.dead_letters:
            continue
        if silent:
            sections.append(DeadLetterSection(queue, [], error=f"Not asked: {silent}."))
            continue
        try:
            sections.append(DeadLetterSection(queue, dead_letters_list(queue=queue, client=client)))
        except (BotoCoreError, ClientError) as exc:
            missing = missing_queue_text(exc, dead_letter_queue_name(queue))
            sections.append(DeadLetterSection(queue, [], error=(missing or str(exc))[:300]))
            if isinstance(exc, SQS_SILENT):
                silent = f"SQS did not answer about the {queue} queue"
                # The page's banner asks the broker's health next: it knows now, and does
                # not make the page wait on a second question to a silent SQS.
                broker_health.fail(exc)
    return sections


def metrics_get(*, now: datetime | None = None) -> dict[str, Any]:
    """The operations page's figures as plain data (times in seconds, ISO 8601 stamps)."""
    now = now or timezone.now()
    orphan_count, _ = orphaned_jobs(now=now, limit=0)
    return {
        "generated_at": now.isoformat(),
        "queues": [
            {
                "queue": q.queue,
                "oldest_waiting_seconds": round(q.oldest_waiting_seconds, 3),
                "paused": bool(q.paused_by),
                "visible": depths[q.queue].visible if q.queue in depths else None,
                "in_flight": depths[q.queue].in_flight if q.queue in depths else None,
                "dead_letters": depths[q.queue].dead_letters if q.queue in depths else None,
            }
            for depths in [{d.queue: d for d in QueueDepth.objects.all()}]
            for q in queue_latencies(now=now)
        ],
        "runtimes": [
            {
                "task": r.task_name,
                "period": r.period,
                "runs": r.runs,
                "p50_seconds": round(r.p50, 3),
                "p95_seconds": round(r.p95, 3),
                "max_seconds": round(r.max, 3),
            }
            for r in runtime_percentiles(now=now)
        ],
        "states": {
            s.state: {"last_hour": s.last_hour, "last_day": s.last_day}
            for s in job_state_counts(now=now)
        },
        "orphaned_jobs": orphan_count,
        "workers": [
            {
                "hostname": w.heartbeat.hostname,
                "online": w.online,
                # A worker is alive when it consumes: online (its process beats) and not
                # stalled (its consumer received from SQS lately) is what to alert on.
                "stalled": w.stalled,
                "consuming": w.consuming,
                # Queues it no longer receives from while its other polls work.
                "stalled_queues": list(w.stalled_queues),
                "queues": w.heartbeat.queues,
                "active": w.heartbeat.active,
                "last_seen_at": w.heartbeat.last_seen_at.isoformat(),
                "last_receive_at": (
                    w.heartbeat.last_receive_at.isoformat() if w.heartbeat.last_receive_at else None
                ),
            }
            for w in worker_rows(now=now)
        ],
    }
