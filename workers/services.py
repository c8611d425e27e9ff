"""Writes for the job spine: the diagnostic job and record cleanup."""

from __future__ import annotations

import json
import logging
import time
import traceback
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from celery import states
from django.conf import settings
from django.db import DatabaseError, transaction
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from workers import jobs
from workers.broker import names_missing_queue
from workers.deferred import deferred_entries_remove
from workers.enqueue import Requester, job_enqueue, job_message, new_task_id
from workers.errors import ApplicationError
from workers.joblog import JobLogWriter
from workers.models import DiagnosticRun, Job, JobLogChunk
from workers.outbox import (
    BROKER_ERRORS,
    MAX_SQS_DELAY_SECONDS,
    broker_unreachable,
    job_unsendable_record,
    publish_now,
)
from workers.tasks_backend_worker import celery_task_named

logger = logging.getLogger(__name__)


class DiagnosticFailure(RuntimeError):
    """Raised on purpose by a diagnostic run asked to fail."""


@transaction.atomic
def diagnostic_run_start(
    *, requester: Requester, lines: int = 300, duration_seconds: float = 4.0, fail: bool = False
) -> DiagnosticRun:
    run = DiagnosticRun.objects.create(
        lines=lines, duration_seconds=duration_seconds, fail=fail, task_id=new_task_id()
    )
    job_enqueue(
        jobs.DIAGNOSTIC_RUN_EXECUTE,
        requester=requester,
        args=[run.pk],
        audit_object=run,
        task_id=run.task_id,
    )
    return run


def diagnostic_run_execute(*, run_id: int, task_id: str) -> dict[str, Any] | None:
    """Do the diagnostic run's work; safe to call again for the same run."""
    with transaction.atomic():
        run = DiagnosticRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None:
            return None
        if run.state == DiagnosticRun.State.SUCCEEDED:
            # A duplicate or late redelivery: the work is done, report what it produced.
            return run.summary
        run.state = DiagnosticRun.State.RUNNING
        run.attempts += 1
        run.save(update_fields=["state", "attempts"])

    try:
        return _diagnostic_run_work(run, run_id=run_id, task_id=task_id)
    except DatabaseError as exc:
        # The log writer has written the cause on a fresh connection; the row says it too.
        DiagnosticRun.objects.filter(pk=run_id).exclude(state=DiagnosticRun.State.SUCCEEDED).update(
            state=DiagnosticRun.State.FAILED,
            error=f"{exc.__class__.__name__}: {exc}",
            finished_at=timezone.now(),
        )
        raise


def _diagnostic_run_work(run: DiagnosticRun, *, run_id: int, task_id: str) -> dict[str, Any]:
    pause = run.duration_seconds / run.lines
    with JobLogWriter(task_id) as log:
        if log.resumed:
            log.line(f"-- delivered again: attempt {run.attempts} starts over --")
        for n in range(1, run.lines + 1):
            log.line(f"diagnostic line {n}/{run.lines}")
            log.set_progress(n, run.lines)
            time.sleep(pause)
        if run.fail and run.attempts == 1:
            DiagnosticRun.objects.filter(pk=run_id).update(
                state=DiagnosticRun.State.FAILED, finished_at=timezone.now()
            )
            raise DiagnosticFailure(
                f"diagnostic run {run_id} failed on request after {run.lines} lines "
                "(its first attempt only: a retry succeeds)"
            )
        summary = {"run": run_id, "lines": run.lines, "attempts": run.attempts}
        log.line(f"done: run {run_id}, {run.lines} lines, attempt {run.attempts}")

    DiagnosticRun.objects.filter(pk=run_id).update(
        state=DiagnosticRun.State.SUCCEEDED, summary=summary, finished_at=timezone.now()
    )
    return summary


def diagnostic_run_mark_lost(*, task_id: str, reason: str) -> None:
    """Its worker is gone and nobody took the job over: the run ends failed, saying why."""
    DiagnosticRun.objects.filter(
        task_id=task_id, state__in=(DiagnosticRun.State.QUEUED, DiagnosticRun.State.RUNNING)
    ).update(state=DiagnosticRun.State.FAILED, error=reason, finished_at=timezone.now())


def job_republish_unsent(*, older_than: timedelta = timedelta(minutes=1)) -> int:
    """Send jobs that were recorded but never reached the broker (their process died with
    them in its relay). Returns how many were sent; stops at the first broker failure.

    A job that may not start for longer than SQS can delay a message is left to its
    clocked beat entry (workers/deferred.py)."""
    now = timezone.now()
    unsent = (
        Job.objects.filter(sent_at__isnull=True, created_at__lt=now - older_than)
        .filter(
            Q(run_after__isnull=True)
            | Q(run_after__lte=now + timedelta(seconds=MAX_SQS_DELAY_SECONDS))
        )
        .order_by("created_at")
    )
    sent = 0
    missing: set[str] = set()
    for task_id, queue in list(unsent.values_list("task_id", "queue")[:500]):
        if queue in missing:
            continue
        try:
            sent += job_send_recorded(task_id=task_id)
        except BROKER_ERRORS as exc:
            # A queue whose SQS queue does not exist holds up its own jobs only: stopping
            # here left every job queued after it unsent, whatever its queue.
            if not names_missing_queue(f"{exc.__class__.__name__}: {exc}"):
                raise
            logger.error(
                "unsent jobs of queue %s left unsent: its SQS queue does not exist (%s)",
                queue,
                exc,
            )
            missing.add(queue)
    return sent


def job_send_recorded(*, task_id: str) -> bool:
    """Publish a recorded, unsent job with its own task id and mark it sent; True if sent.

    The job's row stays locked while it is published, so the outbox sweep and a deferred
    job's beat entry never both send it. A job that has started already (a worker got it
    after all), expired, or whose task this process does not know is marked sent and left;
    one whose message cannot be made (`job_unsendable_record`) ends FAILURE, saying why.
    Raises what the broker raised if it is unreachable; the job then stays unsent.
    """
    with transaction.atomic():
        job = (
            Job.objects.select_for_update(skip_locked=True)
            .filter(task_id=task_id, sent_at__isnull=True)
            .first()
        )
        if job is None:
            return False
        result = TaskResult.objects.filter(task_id=task_id, status=states.PENDING).first()
        task = celery_task_named(job.task_name)
        if result is None or task is None:
            Job.objects.filter(pk=job.pk).update(sent_at=timezone.now())
            return False
        requester = Requester.of(job)
        try:
            publish_now(
                job_message(
                    task,
                    job.task_id,
                    requester,
                    json.loads(result.task_args or "[]"),
                    json.loads(result.task_kwargs or "{}"),
                    {"queue": job.queue},
                    run_after=job.run_after,
                )
            )
        except Exception as exc:
            # The job's own fault (arguments that do not fit its task, as a schedule saved
            # with wrong ones gives) would fail the same way at every sweep, holding up the
            # jobs queued after it, so it ends here, saying why.
            if broker_unreachable(exc):
                raise
            logger.exception("job %s [%s] cannot be sent", job.task_name, task_id)
            job_unsendable_record(
                task_id=task_id,
                reason=f"{exc.__class__.__name__}: {exc}",
                trace=traceback.format_exc(),
            )
            sent = False
        else:
            sent = True
        Job.objects.filter(pk=job.pk).update(sent_at=timezone.now())
        return sent


def job_records_cleanup(*, older_than: timedelta | None = None) -> int:
    """Delete job rows and logs of jobs past the result expiry; returns how many jobs."""
    cutoff = timezone.now() - (older_than or settings.CELERY_RESULT_EXPIRES)
    expired = list(
        Job.objects.filter(created_at__lt=cutoff)
        .exclude(task_id__in=TaskResult.objects.filter(date_done__isnull=True).values("task_id"))
        .values_list("task_id", flat=True)[:10_000]
    )
    with transaction.atomic():
        JobLogChunk.objects.filter(task_id__in=expired).delete()
        Job.objects.filter(task_id__in=expired).delete()
        deferred_entries_remove(task_ids=expired)
    return len(expired)


class ScheduleRunRefused(ApplicationError):
    """A schedule cannot be run now; the message says why, in words for the admin."""


@transaction.atomic
def periodic_tasks_run_now(
    *, periodic_tasks: Iterable[PeriodicTask], requester: Requester
) -> list[str]:
    """Start each schedule's task now, as a job like any other (PENDING record, requester,
    LogEntry on the schedule); all or none: one unknown task queues nothing."""
    from workers.celery import app

    app.loader.import_default_modules()
    started = []
    for periodic_task in periodic_tasks:
        task = app.tasks.get(periodic_task.task)
        if task is None:
            raise ScheduleRunRefused(
                f"Schedule {periodic_task.name!r} names an unknown task {periodic_task.task!r}."
            )
        try:
            args = json.loads(periodic_task.args or "[]")
            kwargs = json.loads(periodic_task.kwargs or "{}")
        except ValueError:
            raise ScheduleRunRefused(
                f"Schedule {periodic_task.name!r} has arguments that are not JSON."
            ) from None
        started.append(
            job_enqueue(
                task,
                requester=requester,
                args=args,
                kwargs=kwargs,
                audit_object=periodic_task,
                queue=periodic_task.queue or None,
            )
        )
    return started
