"""The dashboard's job (infra_tasks/dashboard/jobs.py): named after its service, on the
infra queue, still runs under its former name; scheduled after each migrate, following
its setting."""

from __future__ import annotations

from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask

from infra_tasks.dashboard.jobs import ECS_SERVICES_REFRESH, REFRESH_SCHEDULE_NAME
from workers.celery import app
from workers.job_registry import canonical_name
from workers.periodic import periodic_jobs_sync
from workers.queues import queue_for_task

FORMER = "infra_tasks.dashboard.tasks.refresh_ecs_services"


def test_the_refresh_is_an_infra_task_under_its_name_and_its_former_one() -> None:
    app.loader.import_default_modules()
    assert ECS_SERVICES_REFRESH.name == "infra_tasks.dashboard.tasks.ecs_services_refresh"
    assert canonical_name(FORMER) == ECS_SERVICES_REFRESH.name
    for name in (ECS_SERVICES_REFRESH.name, FORMER):
        assert name in app.tasks and queue_for_task(name) == "infra"


@pytest.mark.django_db
def test_the_refresh_is_scheduled_out_of_the_box_and_follows_its_setting(settings: Any) -> None:
    task = PeriodicTask.objects.get(name=REFRESH_SCHEDULE_NAME)
    assert task.task == ECS_SERVICES_REFRESH.name
    assert task.interval is not None and task.interval.every == 120
    PeriodicTask.objects.filter(name=REFRESH_SCHEDULE_NAME).update(task=FORMER)
    settings.ECS_REFRESH_INTERVAL_SECONDS = 45

    periodic_jobs_sync()

    task = PeriodicTask.objects.get(name=REFRESH_SCHEDULE_NAME)
    assert task.task == ECS_SERVICES_REFRESH.name
    assert task.interval is not None and task.interval.every == 45
