"""The job registry: one declaration gives a task its name, queue, limits and former names."""

from __future__ import annotations

import pytest

from workers import jobs
from workers.celery import app
from workers.job_registry import canonical_name, declared_specs, job_spec, spec_for
from workers.queues import QUEUES, queue_for_task


def test_a_renamed_task_is_registered_under_its_old_name_and_runs_the_same_code() -> None:
    new = jobs.DIAGNOSTIC_RUN_EXECUTE.task()
    old = app.tasks["workers.tasks.run_diagnostic"]
    assert old.run.__code__ is new.run.__code__


def test_old_and_new_names_resolve_to_one_declaration() -> None:
    assert spec_for("workers.tasks.record_queue_depths") is jobs.QUEUE_DEPTHS_RECORD
    assert canonical_name("workers.tasks.record_queue_depths") == jobs.QUEUE_DEPTHS_RECORD.name
    assert canonical_name("somebody.elses.task") == "somebody.elses.task"


def test_every_declared_job_goes_to_a_queue_that_exists_under_each_of_its_names() -> None:
    for spec in declared_specs():
        assert spec.queue in QUEUES, spec
        for name in (spec.name, *spec.old_names):
            assert queue_for_task(name) == spec.queue


def test_every_declared_job_is_a_registered_task_under_each_of_its_names() -> None:
    for spec in declared_specs():
        assert spec.task().name == spec.name
        for old in spec.old_names:
            assert old in app.tasks, old


def test_a_task_declared_with_its_own_limits_keeps_them() -> None:
    for spec in declared_specs():
        task = spec.task()
        queue = QUEUES[spec.queue]
        assert task.time_limit == (spec.time_limit or queue.time_limit)
        assert task.soft_time_limit == (spec.soft_time_limit or queue.soft_time_limit)


def test_a_name_cannot_be_declared_twice_for_different_jobs() -> None:
    with pytest.raises(ValueError, match="declared twice"):
        job_spec("tests.elsewhere.tasks.x", old_names=("workers.tasks.run_diagnostic",))


def test_tasks_keep_celerys_django_api_beside_the_claim() -> None:
    from celery.contrib.django.task import DjangoTask

    task = jobs.DIAGNOSTIC_RUN_EXECUTE.task()
    assert isinstance(task, DjangoTask) and callable(task.delay_on_commit)
