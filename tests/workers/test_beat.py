"""Jobs started by a schedule are recorded like any other: PENDING, requester = schedule."""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry
from django_celery_results.models import TaskResult

from tests.support.servers import WorkerProcess, wait_until
from workers.beat import RecordingDatabaseScheduler
from workers.celery import app
from workers.models import DiagnosticRun, Job, RequesterKind

pytestmark = pytest.mark.django_db(transaction=True)


def test_scheduled_job_is_recorded_with_the_schedule_as_requester_and_runs(
    worker: WorkerProcess,
) -> None:
    run = DiagnosticRun.objects.create(lines=3, duration_seconds=0.1)
    every_hour, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    periodic = PeriodicTask.objects.create(
        name="hourly diagnostic",
        task="workers.tasks.diagnostic_run_execute",
        interval=every_hour,
        args=json.dumps([run.pk]),
    )
    scheduler = RecordingDatabaseScheduler(app=app)
    try:
        result = scheduler.apply_async(ModelEntry(periodic, app=app))
    finally:
        scheduler.close()

    job = Job.objects.get(task_id=result.id)
    assert (job.requester_kind, job.requester_label) == (
        RequesterKind.SCHEDULE,
        "hourly diagnostic",
    )
    assert TaskResult.objects.get(task_id=result.id).periodic_task_name == "hourly diagnostic"
    wait_until(
        lambda: TaskResult.objects.filter(task_id=result.id, status="SUCCESS").exists(),
        timeout=30,
        message="the scheduled job to succeed",
    )
    assert DiagnosticRun.objects.get(pk=run.pk).state == DiagnosticRun.State.SUCCEEDED


@pytest.mark.django_db(serialized_rollback=True)
def test_job_cleanup_is_scheduled_out_of_the_box() -> None:
    task = PeriodicTask.objects.get(task="workers.tasks.job_records_cleanup")
    assert task.enabled and task.crontab is not None
