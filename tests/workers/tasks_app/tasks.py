"""Django tasks of the test app: found by workers like any installed app's tasks module."""

from __future__ import annotations

from typing import Any

from celery import current_task
from django.utils import timezone

from workers.tasks_api import TaskContext, task
from workers.tasks_backend import get_job_log


class ReportFailure(RuntimeError):
    """Raised on purpose by `fail_loudly`."""


@task
def add(a: int, b: int) -> int:
    get_job_log().line(f"adding {a} and {b}")
    return a + b


@task
def echo(value: Any) -> Any:
    return value


@task
def fail_loudly(reason: str) -> None:
    get_job_log().line("about to fail")
    raise ReportFailure(reason)


@task(takes_context=True)
def describe_context(context: TaskContext, label: str) -> dict[str, Any]:
    return {
        "label": label,
        "id": context.task_result.id,
        "attempt": context.attempt,
        "status": str(context.task_result.status),
    }


@task
def note_start(label: str) -> str:
    """Writes one log line per run, so a second run of the same job shows."""
    started = timezone.now().isoformat()
    get_job_log().line(f"ran {label} at {started}")
    return started


@task
async def add_later(a: int, b: int) -> int:
    return a + b


@task(queue_name="media")
def time_limits() -> list[int | None]:
    """The hard and soft limits the worker runs this job under."""
    return list(current_task.request.timelimit or (None, None))


@task
def enqueue_follow_up(a: int) -> str:
    return add.enqueue(a, 1).id


# The documented example (docs/tasks-api.md), copied as it is written there.
@task
def send_welcome(user_id: int) -> str:
    get_job_log().line(f"welcoming user {user_id}")
    return f"welcomed {user_id}"
