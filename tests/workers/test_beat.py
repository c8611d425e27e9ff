"""Jobs started by a schedule are recorded like any other: PENDING, requester = schedule."""

from __future__ import annotations

import json
import os
import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_beat.schedulers import ModelEntry
from django_celery_results.models import TaskResult

from tests.support.servers import BeatProcess, WorkerProcess, new_queue_prefix, wait_until
from tests.workers.test_monitoring import sqs_queues_named
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


def test_a_beat_killed_right_after_sending_does_not_send_that_occurrence_again(
    worker_env: dict[str, str], run_dir: Path
) -> None:
    """Beat saves an entry's last run as it sends it. django-celery-beat alone writes it
    every three minutes, and a beat killed in between sent the same occurrence again."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    witness, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    # The frequent entry is due at once, the hourly one four seconds later: beat saves
    # everything at its first send anyway, so the hourly send must not be the first.
    for name, schedule, due_in in (
        ("every two seconds", witness, 0),
        ("hourly cleanup", hourly, 4),
    ):
        PeriodicTask.objects.create(
            name=name,
            task="workers.tasks.queue_depths_record",
            interval=schedule,
            last_run_at=timezone.now() - timedelta(hours=1, seconds=-due_in),
        )

    def sent(name: str) -> int:
        return Job.objects.filter(requester_label=name).count()

    def saved_run(name: str) -> bool:
        last = PeriodicTask.objects.get(name=name).last_run_at
        return last is not None and last > timezone.now() - timedelta(minutes=5)

    beat = BeatProcess(env=env, log_dir=run_dir)
    try:
        wait_until(lambda: sent("hourly cleanup") == 1, timeout=30, message="the first send")
        # Saved right after the send (a kill in those milliseconds can still repeat it).
        wait_until(lambda: saved_run("hourly cleanup"), timeout=10, message="the run saved")
    finally:
        os.killpg(beat.process.pid, signal.SIGKILL)  # no shutdown, no last sync
        beat.process.wait(timeout=10)
    witnessed = sent("every two seconds")

    again = BeatProcess(env=env, log_dir=run_dir)
    try:
        # The new beat is scheduling: it sends the frequent entry twice more.
        wait_until(
            lambda: sent("every two seconds") >= witnessed + 2,
            timeout=30,
            message="the restarted beat to send the frequent entry",
        )
        assert sent("hourly cleanup") == 1, "the hourly occurrence was sent again"
    finally:
        again.stop()
