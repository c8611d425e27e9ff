"""Queues and their limits; a task goes to the queue its declaration names (job_registry).

SQS redelivers a message that is not deleted within the queue's visibility timeout. Every
queue has the same short timeout (SQS_VISIBILITY_TIMEOUT_SECONDS, 90 s) and a worker extends
the messages it holds while it holds them (workers/visibility.py): a job whose worker died
comes back within about that long, on every queue, while a live job of any length is never
delivered again. Time limits are therefore independent of the visibility timeout. The SQS
queues are created by `manage.py sqs_queues` (development, tests) and by the CloudFormation
template (production); a test keeps the two in agreement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kombu import Queue

from workers.job_registry import DEFAULT_QUEUE, spec_for


@dataclass(frozen=True)
class QueueSpec:
    name: str
    time_limit: int  # hard limit: the pool process is killed
    soft_time_limit: int  # SoftTimeLimitExceeded is raised in the task

    def __post_init__(self) -> None:
        if not self.soft_time_limit < self.time_limit:
            raise ValueError(f"queue {self.name}: need soft limit < hard limit")


QUEUES: dict[str, QueueSpec] = {
    spec.name: spec
    for spec in (
        QueueSpec("default", time_limit=300, soft_time_limit=270),
        QueueSpec("media", time_limit=120, soft_time_limit=100),
        # Terraform and RDS waits are long; runs enforce their own, shorter, limits.
        QueueSpec("infra", time_limit=10800, soft_time_limit=10500),
        QueueSpec("release", time_limit=2700, soft_time_limit=2400),
    )
}


def queue_for_task(task_name: str) -> str:
    """The queue a job's declaration names (its app's jobs.py), under any of its names;
    a task nobody declared (Celery's own, a test's) goes to the default queue."""
    spec = spec_for(task_name)
    return spec.queue if spec is not None else DEFAULT_QUEUE


def route_task(name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any):
    """Celery router (task_routes entry)."""
    return {"queue": queue_for_task(name)}


class QueueTimeLimits:
    """Celery task annotation: each task inherits the time limits of its queue.

    A task that sets its own limits keeps them.
    """

    def annotate(self, task: Any) -> dict[str, int] | None:
        spec = QUEUES[queue_for_task(task.name)]
        limits = {}
        if getattr(task, "time_limit", None) is None:
            limits["time_limit"] = spec.time_limit
        if getattr(task, "soft_time_limit", None) is None:
            limits["soft_time_limit"] = spec.soft_time_limit
        return limits or None


def kombu_queues() -> tuple[Queue, ...]:
    return tuple(Queue(name, routing_key=name) for name in QUEUES)
