"""The jobs of managed databases (infra_tasks/rds/jobs.py): named after their services, on
the infra queue, still run under their former names; the enforcement pass is scheduled
after each migrate and follows its setting."""

from __future__ import annotations

from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from infra_tasks.rds.jobs import (
    DATABASE_ACTION_EXECUTE,
    DATABASE_SCHEDULED_RUN,
    DATABASES_ENFORCE,
    ENFORCE_SCHEDULE_NAME,
)
from workers.celery import app
from workers.claims import ClaimedTask
from workers.job_registry import JobSpec, canonical_name
from workers.periodic import periodic_jobs_sync
from workers.queues import queue_for_task

SPECS = [DATABASE_ACTION_EXECUTE, DATABASE_SCHEDULED_RUN, DATABASES_ENFORCE]
RENAMES = {
    f"infra_tasks.rds.tasks.{old}": f"infra_tasks.rds.tasks.{new}"
    for old, new in (
        ("execute_database_action", "database_action_execute"),
        ("run_scheduled_action", "database_scheduled_run"),
        ("enforce_schedules", "databases_enforce"),
    )
}


@pytest.mark.parametrize("spec", SPECS, ids=lambda spec: spec.name)
def test_each_job_is_a_claimed_infra_task_under_its_name_and_its_former_one(spec: JobSpec) -> None:
    app.loader.import_default_modules()
    for name in (spec.name, *spec.old_names):
        assert isinstance(app.tasks[name], ClaimedTask)
        assert queue_for_task(name) == "infra"


def test_the_renames() -> None:
    assert {old: canonical_name(old) for old in RENAMES} == RENAMES


@pytest.mark.django_db
def test_a_message_under_a_former_name_still_runs_its_service() -> None:
    app.loader.import_default_modules()
    # A schedule row written before the rename fires for a database deleted since.
    result = app.tasks["infra_tasks.rds.tasks.run_scheduled_action"].apply(args=[987654, "stop"])

    assert result.successful() and result.get() is None


@pytest.mark.django_db
def test_the_enforcement_pass_is_scheduled_out_of_the_box() -> None:
    task = PeriodicTask.objects.get(name=ENFORCE_SCHEDULE_NAME)
    assert task.task == DATABASES_ENFORCE.name
    assert task.interval is not None and task.interval.every == 300


@pytest.mark.django_db
def test_the_enforcement_schedule_follows_its_setting_and_the_new_task_name(settings: Any) -> None:
    PeriodicTask.objects.filter(name=ENFORCE_SCHEDULE_NAME).update(
        task="infra_tasks.rds.tasks.enforce_schedules"
    )
    settings.RDS_ENFORCE_INTERVAL_SECONDS = 120

    periodic_jobs_sync()

    task = PeriodicTask.objects.get(name=ENFORCE_SCHEDULE_NAME)
    assert task.task == DATABASES_ENFORCE.name
    assert task.interval is not None and task.interval.every == 120
