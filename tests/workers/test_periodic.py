"""Periodic jobs: declared in each app's jobs.py, written to beat's tables after migrate."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from workers import jobs
from workers.periodic import PeriodicJob, declared_periodic_jobs, periodic_jobs_sync

pytestmark = pytest.mark.django_db


def test_every_declared_periodic_job_has_its_row_after_migrate() -> None:
    call_command("migrate", verbosity=0)
    for job in declared_periodic_jobs():
        row = PeriodicTask.objects.get(name=job.name)
        assert row.task == job.job.name
        assert (row.interval is None) == (job.every is None)


def test_a_second_sync_changes_nothing() -> None:
    periodic_jobs_sync()
    assert periodic_jobs_sync() == 0


def test_a_row_still_naming_a_renamed_task_is_moved_to_the_new_name() -> None:
    periodic_jobs_sync()
    PeriodicTask.objects.filter(name="Record SQS queue depths").update(
        task="workers.tasks.record_queue_depths"
    )
    periodic_jobs_sync()
    row = PeriodicTask.objects.get(name="Record SQS queue depths")
    assert row.task == jobs.QUEUE_DEPTHS_RECORD.name


def test_a_schedule_and_pause_an_operator_chose_survive_the_next_deploy() -> None:
    periodic_jobs_sync()
    hourly, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.HOURS)
    PeriodicTask.objects.filter(name="Record SQS queue depths").update(
        interval=hourly, enabled=False
    )
    periodic_jobs_sync()
    row = PeriodicTask.objects.get(name="Record SQS queue depths")
    assert (row.interval_id, row.enabled) == (hourly.pk, False)


def test_a_schedule_read_from_a_setting_follows_the_setting(settings) -> None:
    from workers import periodic

    declared = PeriodicJob(
        "tests: follows a setting",
        jobs.QUEUE_DEPTHS_RECORD,
        every=lambda: settings.TEST_PERIODIC_SECONDS,
    )
    periodic.periodic_job_declare(declared)
    try:
        settings.TEST_PERIODIC_SECONDS = 45
        periodic_jobs_sync()
        settings.TEST_PERIODIC_SECONDS = 90
        periodic_jobs_sync()
        row = PeriodicTask.objects.get(name=declared.name)
        assert (row.interval.every, row.interval.period) == (90, IntervalSchedule.SECONDS)
    finally:
        periodic._DECLARED.pop(declared.name)


def test_a_declaration_needs_exactly_one_kind_of_schedule() -> None:
    with pytest.raises(ValueError, match="either"):
        PeriodicJob("neither", jobs.QUEUE_DEPTHS_RECORD)
    with pytest.raises(ValueError, match="either"):
        PeriodicJob("both", jobs.QUEUE_DEPTHS_RECORD, every=60, crontab={"minute": "0"})
