"""Reads of job records and logs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models import Model, Q, QuerySet
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers import display, families
from workers.enqueue import Requester
from workers.models import DiagnosticRun, Job, JobLogChunk, QueuePause, RequesterKind
from workers.operations import queues_without_consumer
from workers.outbox import MAX_SQS_DELAY_SECONDS, broker_health
from workers.subjects import JobSubject, job_subject_get

Rows = TypeVar("Rows", bound=Model)

# Bounds one poll's response; a reader far behind catches up over a few polls.
MAX_CHUNKS_PER_READ = 50


@dataclass(frozen=True)
class LogSlice:
    lines: list[str]
    next_line: int
    more: bool = False  # cut short by the size budget: more lines are already stored


def job_log_since(
    *,
    task_id: str,
    since: int = 0,
    max_chunks: int = MAX_CHUNKS_PER_READ,
    max_bytes: int | None = None,
) -> LogSlice:
    """Lines from line `since` on, in one query on (task_id, end_line), about `max_bytes`
    of text at most (JOB_LOG_MAX_POLL_BYTES by default; always at least one line)."""
    budget = settings.JOB_LOG_MAX_POLL_BYTES if max_bytes is None else max_bytes
    chunks = (
        JobLogChunk.objects.filter(task_id=task_id, end_line__gt=since)
        .order_by("start_line")
        .values_list("start_line", "end_line", "text")[:max_chunks]
    )
    lines: list[str] = []
    next_line = since
    size = 0
    for start, end, text in chunks:
        first = max(0, since - start)
        if size + len(text) + 1 <= budget:  # the whole chunk fits: no count per line
            lines.extend(text.split("\n")[first:])
            size += len(text) + 1
            next_line = end
            continue
        for offset, line in enumerate(text.split("\n")[first:]):
            # Characters, not bytes: a cheap bound, exact for ASCII output.
            size += len(line) + 1
            if size > budget and lines:
                return LogSlice(lines=lines, next_line=start + first + offset, more=True)
            lines.append(line)
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
    return Job.objects.filter(task_id=task_id).select_related("requested_by", "retry_of").first()


def job_requester(*, task_id: str) -> Requester | None:
    """Who asked for a job (its Job row, written at enqueue), for a task that starts more
    work on their behalf; None for a job with no row (a message from before the rows)."""
    job = Job.objects.filter(task_id=task_id).first()
    return Requester.of(job) if job is not None else None


def job_requester_by_hand(*, task_id: str) -> Requester | None:
    """Who asked for a job when it was not a schedule's firing (a Run now, a Retry, the
    command line); None for a firing, whose task acts for its schedule."""
    asked_by = job_requester(task_id=task_id)
    return asked_by if asked_by is not None and asked_by.kind != RequesterKind.SCHEDULE else None


def job_task_name(*, task_id: str) -> str | None:
    """The task a job runs: from its Job row (written at enqueue), else its result row."""
    for model in (Job, TaskResult):
        name = model.objects.filter(task_id=task_id).values_list("task_name", flat=True).first()
        if name:
            return str(name)
    return None


def task_results_viewable(queryset: QuerySet[Rows], *, user: object) -> QuerySet[Rows]:
    """The rows of `queryset` (job results, or Job rows: by their task name) whose family
    `user` may view (workers/families.py)."""
    allowed = families.viewable_families(user)
    if allowed is None:
        return queryset
    condition = Q(pk__in=[])
    for family in allowed:
        own = Q()
        for prefix in family.prefixes:
            own |= Q(task_name__startswith=prefix)
        for prefix in families.task_prefixes_excluded_before(family):
            own &= ~Q(task_name__startswith=prefix)
        # Rows written under a task's former name belong to the family it is in now.
        into, out_of = families.renamed_into_and_out_of(family)
        condition |= (own & ~Q(task_name__in=out_of)) | Q(task_name__in=into)
    return queryset.filter(condition)


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


# A result shown on a page is cut here; the whole of it stays in the database.
RESULT_TEXT_LIMIT = 4000


@dataclass(frozen=True)
class JobSummary:
    """Everything a job's live summary shows, read at one moment."""

    task_id: str
    task_name: str
    family: str
    status: str
    state_label: str
    finished: bool
    worker: str
    queue: str
    requester: str
    created_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    run_after: datetime | None  # the earliest it may start, if it was deferred
    duration: str
    result: str
    error: str
    traceback: str
    progress_done: int | None
    progress_total: int | None
    subject: JobSubject | None
    retry_of: str | None = None  # the task id of the job this one runs again
    retries: tuple[str, ...] = ()  # the task ids of the jobs that ran this one again
    discarded: str = ""  # who discarded it and when, if someone did
    queue_paused_by: str = ""  # not started yet and its queue is paused: by whom
    # Recorded but not yet handed to SQS (and not a deferred job waiting for its time).
    unsent: bool = False
    # Unsent, and this process's last send to its queue found the SQS queue missing.
    unsent_queue_missing: bool = False
    # Due, in SQS, and no worker consumes its queue now (workers/operations.py's rule).
    no_consumer: bool = False
    no_consumer_last_seen: datetime | None = None  # when one last received from the queue
    # Why and when a worker moved its message to the dead-letter queue, while it waits there.
    dead_lettered: str = ""


# Retries of retries: a bound, not a limit anyone meets.
RETRY_CHAIN_LIMIT = 20


def job_subject(*, task_name: str | None, task_id: str, job: Job | None) -> JobSubject | None:
    """The record a job works on. A record names the job first queued for it, so a retry
    (a new job, same arguments) finds it through the job it runs again."""
    subject = job_subject_get(task_name=task_name, task_id=task_id)
    for _ in range(RETRY_CHAIN_LIMIT):
        if subject is not None or job is None or job.retry_of_id is None:
            break
        job = job.retry_of
        if job is not None:
            subject = job_subject_get(task_name=job.task_name, task_id=job.task_id)
    return subject


def job_summary_get(*, task_id: str, now: datetime | None = None) -> JobSummary | None:
    """The job's state as one consistent reading (None if there is no such job)."""
    result = task_result_get(task_id=task_id)
    if result is None:
        return None
    job = job_get(task_id=task_id)
    now = now or timezone.now()
    status = result.status
    finished = status in display.FINISHED_STATES
    started = result.date_started
    # date_done is stamped on every save of the row: it is an end time only once finished.
    done = result.date_done if finished else None
    if finished and started and done:
        duration = display.duration_text((done - started).total_seconds())
    elif finished:
        duration = "—"
    elif started:
        duration = f"running for {display.duration_text((now - started).total_seconds())}"
    else:
        duration = (
            f"waiting for {display.duration_text((now - result.date_created).total_seconds())}"
        )
    error, result_text = _outcome(result.result, status)
    # A queued job that never reached SQS (it was down, or the process that recorded the
    # job died first) waits for the outbox sweeper, not for a worker.
    unsent = bool(
        job
        and job.sent_at is None
        and not started
        and not finished
        and (
            job.run_after is None or (job.run_after - now).total_seconds() <= MAX_SQS_DELAY_SECONDS
        )
    )
    # A queued job whose queue is paused waits for the resume, not for a worker.
    paused_by = (
        QueuePause.objects.filter(queue=job.queue).values_list("paused_by_label", flat=True).first()
        or ""
        if job and job.queue and not started and not finished
        else ""
    )
    dead_lettered = (
        f"{timezone.localtime(job.dead_lettered_at):%Y-%m-%d %H:%M:%S %Z}: {job.dead_letter_reason}"
        if job and job.dead_lettered_at and not finished
        else ""
    )
    # A job in SQS waits for a worker: say so when none consumes its queue, or it reads
    # "Queued" for ever. A job due later is told now too, while there is time to start one.
    # Asked only while it waits (one query on heartbeat rows).
    waits_for_worker = bool(
        job
        and job.queue
        and status == "PENDING"
        and not started
        and not unsent
        and not paused_by
        and not dead_lettered
    )
    idle = queues_without_consumer(now=now) if waits_for_worker and job else {}
    no_consumer = bool(job and job.queue in idle)
    return JobSummary(
        task_id=task_id,
        task_name=result.task_name or (job.task_name if job else ""),
        family=display.job_family(result.task_name),
        status=status,
        state_label=display.state_label(status),
        finished=finished,
        worker=result.worker or "",
        queue=job.queue if job else "",
        requester=job.requester if job else "",
        created_at=result.date_created,
        started_at=started,
        finished_at=done,
        run_after=job.run_after if job else None,
        duration=duration,
        result=result_text,
        error=error,
        traceback=(result.traceback or "") if status == "FAILURE" else "",
        progress_done=job.progress_done if job else None,
        progress_total=job.progress_total if job else None,
        subject=job_subject(task_name=result.task_name, task_id=task_id, job=job),
        retry_of=job.retry_of.task_id if job and job.retry_of else None,
        retries=tuple(job.retries.order_by("created_at").values_list("task_id", flat=True))
        if job
        else (),
        discarded=(
            f"{job.discarded_by_label}, {timezone.localtime(job.discarded_at):%Y-%m-%d %H:%M %Z}"
            if job and job.discarded_at
            else ""
        ),
        unsent=unsent,
        unsent_queue_missing=bool(
            unsent and job and broker_health.missing_queue_error(job.queue) is not None
        ),
        queue_paused_by=paused_by,
        no_consumer=no_consumer,
        no_consumer_last_seen=idle.get(job.queue) if no_consumer and job else None,
        dead_lettered=dead_lettered,
    )


def _outcome(stored: str | None, status: str) -> tuple[str, str]:
    """(error, result) texts: an exception's type and message, or the result as JSON."""
    if status not in display.FINISHED_STATES or stored is None:
        return "", ""
    try:
        value = json.loads(stored)
    except ValueError:
        value = stored
    if status in ("FAILURE", "REVOKED") and isinstance(value, dict) and "exc_type" in value:
        message = value.get("exc_message")
        if isinstance(message, list | tuple):
            message = " ".join(str(part) for part in message)
        if status == "REVOKED":
            # Celery's TaskRevokedError says nothing a person needs: the reason does.
            return str(message or "Cancelled."), ""
        return f"{value['exc_type']}: {message}" if message else str(value["exc_type"]), ""
    # A word ("planned", "applied") reads as itself, not as a quoted JSON string.
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, indent=2, sort_keys=True, default=str)
    )
    if len(text) > RESULT_TEXT_LIMIT:
        text = text[:RESULT_TEXT_LIMIT] + "\n… (cut; the whole result is in the database)"
    return "", text


def diagnostic_job_subject(task_id: str) -> JobSubject | None:
    run = DiagnosticRun.objects.filter(task_id=task_id).first()
    if run is None:
        return None
    return JobSubject(
        label=f"Diagnostic run #{run.pk}" + (" (asked to fail)" if run.fail else ""),
        url=reverse("admin:workers_diagnosticrun_change", args=[run.pk]),
        state=run.get_state_display(),
    )
