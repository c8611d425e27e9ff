"""Reads of job records and logs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django_celery_results.models import TaskResult

from workers.models import Job, JobLogChunk

# Bounds one poll's response; a reader far behind catches up over a few polls.
MAX_CHUNKS_PER_READ = 50


@dataclass(frozen=True)
class LogSlice:
    lines: list[str]
    next_line: int


def job_log_since(
    *, task_id: str, since: int = 0, max_chunks: int = MAX_CHUNKS_PER_READ
) -> LogSlice:
    """Lines from line `since` on, in one query on (task_id, end_line)."""
    chunks = (
        JobLogChunk.objects.filter(task_id=task_id, end_line__gt=since)
        .order_by("start_line")
        .values_list("start_line", "end_line", "text")[:max_chunks]
    )
    lines: list[str] = []
    next_line = since
    for start, end, text in chunks:
        chunk_lines = text.split("\n")
        lines.extend(chunk_lines[max(0, since - start) :])
        next_line = end
    return LogSlice(lines=lines, next_line=next_line)


def job_log_iter_text(*, task_id: str) -> Iterator[str]:
    """The whole log as text pieces, streamed chunk by chunk (for downloads)."""
    chunks = (
        JobLogChunk.objects.filter(task_id=task_id)
        .order_by("start_line")
        .values_list("text", flat=True)
        .iterator(chunk_size=200)
    )
    for text in chunks:
        yield text + "\n"


def job_get(*, task_id: str) -> Job | None:
    return Job.objects.filter(task_id=task_id).select_related("requested_by").first()


def task_result_get(*, task_id: str) -> TaskResult | None:
    return TaskResult.objects.filter(task_id=task_id).first()


def staff_email_addresses() -> list[str]:
    """Where operational alerts go: every active staff member with an address."""
    return list(
        get_user_model()
        .objects.filter(is_staff=True, is_active=True)
        .exclude(email="")
        .values_list("email", flat=True)
    )
