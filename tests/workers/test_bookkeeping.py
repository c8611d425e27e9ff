"""Job records written by hand (workers/bookkeeping.py): a job run in this process, and a job
whose worker is gone, end with the records a worker's run leaves, on real PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from celery import states
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers.bookkeeping import (
    IN_PROCESS_QUEUE,
    job_finish,
    job_record_in_process,
)
from workers.enqueue import Requester, new_task_id
from workers.errors import job_failure
from workers.jobs import DIAGNOSTIC_RUN_EXECUTE
from workers.models import Job, RequesterKind
from workers.reconcile import WORKER_LOST, jobs_mark_lost
from workers.selectors import job_summary_get
from workers.services import job_republish_unsent

pytestmark = pytest.mark.django_db


def record_here(task_id: str) -> None:
    job_record_in_process(
        DIAGNOSTIC_RUN_EXECUTE,
        task_id=task_id,
        args=[7],
        requester=Requester.cli("manage.py something --here"),
        started_at=timezone.now() - timedelta(seconds=5),
        worker="something --here@host",
    )


def test_a_job_run_in_process_is_recorded_started_on_its_own_queue_and_never_sent() -> None:
    task_id = new_task_id()
    record_here(task_id)

    job = Job.objects.get(task_id=task_id)
    assert (job.task_name, job.queue) == (DIAGNOSTIC_RUN_EXECUTE.name, IN_PROCESS_QUEUE)
    assert (job.requester_kind, job.requester_label) == (
        RequesterKind.CLI,
        "manage.py something --here",
    )
    assert job.sent_at is not None
    result = TaskResult.objects.get(task_id=task_id)
    assert (result.status, result.worker) == (states.STARTED, "something --here@host")
    assert result.date_started is not None and result.date_started < timezone.now()
    assert json.loads(result.task_args) == [7]
    # Marked sent: the unsent-job sweeper leaves it alone.
    assert job_republish_unsent(older_than=timedelta(0)) == 0
    summary = job_summary_get(task_id=task_id)
    assert summary is not None
    assert (summary.status, summary.queue, summary.finished) == (
        states.STARTED,
        IN_PROCESS_QUEUE,
        False,
    )
    assert summary.duration.startswith("running for")


def test_finishing_it_succeeded_stores_its_result_and_the_time_it_was_done() -> None:
    task_id = new_task_id()
    record_here(task_id)

    job_finish(task_id=task_id, status=states.SUCCESS, result={"applied": 3})

    result = TaskResult.objects.get(task_id=task_id)
    assert result.status == states.SUCCESS
    assert json.loads(result.result) == {"applied": 3}
    assert result.traceback is None
    assert result.date_done is not None and result.date_done >= result.date_started
    summary = job_summary_get(task_id=task_id)
    assert summary is not None and summary.finished and summary.error == ""
    assert '"applied": 3' in summary.result


def test_finishing_it_failed_shows_the_error_as_a_worker_failure_would() -> None:
    task_id = new_task_id()
    record_here(task_id)

    job_finish(
        task_id=task_id,
        status=states.FAILURE,
        result=job_failure("ReleaseFailed", "it broke", "infra_tasks.releases.services"),
        traceback="ReleaseFailed: it broke\n(run in-process: no Python traceback)",
    )

    result = TaskResult.objects.get(task_id=task_id)
    assert result.status == states.FAILURE
    assert json.loads(result.result) == {
        "exc_type": "ReleaseFailed",
        "exc_message": ["it broke"],
        "exc_module": "infra_tasks.releases.services",
    }
    summary = job_summary_get(task_id=task_id)
    assert summary is not None
    assert summary.error == "ReleaseFailed: it broke"
    assert summary.traceback.startswith("ReleaseFailed: it broke")


def test_a_started_job_whose_worker_never_beat_ends_failure_worker_lost() -> None:
    task_id = new_task_id()
    record_here(task_id)
    TaskResult.objects.filter(task_id=task_id).update(
        date_started=timezone.now() - timedelta(days=1), worker="gone@nowhere"
    )

    assert jobs_mark_lost() == [task_id]

    result = TaskResult.objects.get(task_id=task_id)
    assert result.status == states.FAILURE
    assert json.loads(result.result) == job_failure(
        "WorkerLost", f"{WORKER_LOST}: gone@nowhere last seen never"
    )
    assert result.traceback == f"{WORKER_LOST}: gone@nowhere last seen never"
    assert result.date_done is not None
    summary = job_summary_get(task_id=task_id)
    assert summary is not None
    assert summary.error == f"WorkerLost: {WORKER_LOST}: gone@nowhere last seen never"


def test_a_started_job_on_a_live_worker_whose_claim_ran_out_long_ago_is_lost() -> None:
    """The pool process running it died (killed for memory, say) while its worker lives on:
    nobody renews its claim, and a redelivery found the dead process's lease still held."""
    from workers.models import DiagnosticRun, WorkerHeartbeat

    long_ago = timezone.now() - timedelta(days=1)
    dead, running = new_task_id(), new_task_id()
    for task_id in (dead, running):
        record_here(task_id)
        TaskResult.objects.filter(task_id=task_id).update(
            date_started=long_ago, worker="main@alive"
        )
    run = DiagnosticRun.objects.create(task_id=dead, state=DiagnosticRun.State.RUNNING)
    now = timezone.now()
    WorkerHeartbeat.objects.create(
        hostname="main@alive", pid=1, started_at=long_ago, last_seen_at=now, last_receive_at=now
    )
    Job.objects.filter(task_id=dead).update(claimed_by="main@alive:123", claimed_until=long_ago)
    Job.objects.filter(task_id=running).update(
        claimed_by="main@alive:124", claimed_until=timezone.now() + timedelta(minutes=5)
    )

    assert jobs_mark_lost() == [dead]

    result = TaskResult.objects.get(task_id=dead)
    assert result.status == states.FAILURE
    assert "the process running it (main@alive:123) stopped renewing its claim" in (
        result.traceback or ""
    )
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.FAILED and "stopped renewing" in run.error
    assert TaskResult.objects.get(task_id=running).status == states.STARTED
