"""Routing and per-queue limits are decided in one place and agree with each other."""

import pytest

from workers.celery import app
from workers.queues import QUEUES, QueueSpec, queue_for_task


@pytest.mark.parametrize(
    ("task_name", "queue"),
    [
        ("workers.tasks.diagnostic_run_execute", "default"),
        ("media_pipeline.tasks.course_cover_variants_build", "media"),
        ("media_pipeline.tasks.build_cover_variants", "media"),  # its former name
        ("infra_tasks.terraform.tasks.run_plan_execute", "infra"),
        ("infra_tasks.terraform.tasks.runs_mark_lost", "default"),
        ("infra_tasks.rds.tasks.database_action_execute", "infra"),
        ("infra_tasks.releases.tasks.release_execute", "release"),
        ("celery.backend_cleanup", "default"),  # declared by nobody
    ],
)
def test_tasks_go_to_the_queue_their_declaration_names(task_name: str, queue: str) -> None:
    assert queue_for_task(task_name) == queue


def test_every_queue_warns_its_tasks_before_killing_them() -> None:
    for spec in QUEUES.values():
        assert spec.soft_time_limit < spec.time_limit


def test_a_queue_spec_whose_soft_limit_is_not_below_its_hard_limit_is_refused() -> None:
    with pytest.raises(ValueError, match="soft limit"):
        QueueSpec("bad", time_limit=120, soft_time_limit=120)


def test_tasks_inherit_their_queues_time_limits() -> None:
    app.loader.import_default_modules()  # what a worker does at start: register every task
    task = app.tasks["workers.tasks.diagnostic_run_execute"]
    assert task.time_limit == QUEUES["default"].time_limit
    assert task.soft_time_limit == QUEUES["default"].soft_time_limit


def test_celery_settings_that_make_sqs_safe() -> None:
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json" and conf.accept_content == ["json"]
    assert conf.result_backend == "django-db" and conf.result_extended and conf.task_track_started
