"""The terraform jobs: named after their services, on their queues, still run under their
former names, and their schedules are written from the declarations."""

from __future__ import annotations

import json

import pytest
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from infra_tasks.terraform import jobs
from workers.celery import app
from workers.job_registry import canonical_name
from workers.periodic import periodic_jobs_sync
from workers.queues import queue_for_task
from workers.retries import job_retry_rule

FORMER_NAMES = {
    "terraform_plan": "run_plan_execute",
    "terraform_apply": "run_apply_execute",
    "terraform_state_lock_check": "run_state_lock_check_execute",
    "terraform_state_unlock": "run_state_unlock_execute",
    "terraform_drift_check_all": "drift_check_request_all",
    "terraform_runs_mark_lost": "runs_mark_lost",
}
TASKS = "infra_tasks.terraform.tasks."


@pytest.mark.parametrize(("old", "new"), FORMER_NAMES.items())
def test_each_task_keeps_its_former_name_and_queue(old: str, new: str) -> None:
    app.loader.import_default_modules()
    assert canonical_name(TASKS + old) == TASKS + new
    assert TASKS + old in app.tasks and TASKS + new in app.tasks
    # The lost-run check notices infra workers that are gone: it must not wait for one.
    queue = "default" if new == "runs_mark_lost" else "infra"
    assert queue_for_task(TASKS + new) == queue_for_task(TASKS + old) == queue
    assert job_retry_rule(TASKS + old) == job_retry_rule(TASKS + new)


def test_an_apply_is_not_retried_under_either_name() -> None:
    for name in (jobs.RUN_APPLY_EXECUTE.name, *jobs.RUN_APPLY_EXECUTE.old_names):
        assert not job_retry_rule(name).safe


@pytest.mark.django_db
def test_a_message_under_a_former_name_still_runs() -> None:
    app.loader.import_default_modules()
    result = app.tasks[TASKS + "terraform_runs_mark_lost"].apply()
    assert result.successful() and result.result == 0
    result = app.tasks[TASKS + "terraform_drift_check_all"].apply()
    assert result.successful() and result.result == 0  # no workspaces


@pytest.mark.django_db
def test_the_schedules_are_written_from_the_declarations_and_follow_the_rename() -> None:
    PeriodicTask.objects.filter(name__startswith="Terraform").delete()
    every_minute, _ = IntervalSchedule.objects.get_or_create(
        every=60, period=IntervalSchedule.SECONDS
    )
    # A row written by the old migration, under the old name, retimed by an operator.
    PeriodicTask.objects.create(
        name=jobs.LOST_RUNS_SCHEDULE_NAME,
        task=TASKS + "terraform_runs_mark_lost",
        interval=every_minute,
        args=json.dumps([]),
    )
    periodic_jobs_sync()
    lost = PeriodicTask.objects.get(name=jobs.LOST_RUNS_SCHEDULE_NAME)
    assert lost.task == jobs.RUNS_MARK_LOST.name
    assert lost.interval == every_minute, "an operator's schedule survives"
    assert "TERRAFORM_LOST_AFTER_SECONDS" in lost.description
    drift = PeriodicTask.objects.get(name=jobs.DRIFT_SCHEDULE_NAME)
    assert drift.task == jobs.DRIFT_CHECK_REQUEST_ALL.name
    assert drift.crontab is not None
    assert (drift.crontab.minute, drift.crontab.hour) == ("0", "6")

    PeriodicTask.objects.filter(name=jobs.LOST_RUNS_SCHEDULE_NAME).delete()
    periodic_jobs_sync()
    lost = PeriodicTask.objects.get(name=jobs.LOST_RUNS_SCHEDULE_NAME)
    assert lost.interval is not None
    assert (lost.interval.every, lost.interval.period) == (30, IntervalSchedule.SECONDS)
