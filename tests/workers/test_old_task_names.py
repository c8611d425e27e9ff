"""A job written under a task's former name (before issue 17's renames) is still that task's:
its family, retry rule, subject, display, lost-job handling and run-time figures; and a
message queued under the former name still runs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.servers import WorkerProcess, wait_until
from tests.workers.jobs import job_row
from workers import display, families
from workers.enqueue import Requester, job_record_pending
from workers.job_filters import TaskFilter, registered_task
from workers.job_registry import canonical_name, task_name_lookup, task_names
from workers.models import DiagnosticRun
from workers.ops_metrics import runtime_percentiles
from workers.reconcile import jobs_mark_lost
from workers.retries import job_retry_rule
from workers.selectors import task_results_viewable
from workers.subjects import job_subject_get

OLD = "workers.tasks.run_diagnostic"
NEW = "workers.tasks.diagnostic_run_execute"


def test_a_former_name_maps_to_the_current_one_and_lookups_find_either() -> None:
    assert canonical_name(OLD) == NEW
    assert canonical_name("not.a.declared.task") == "not.a.declared.task"
    assert task_names(OLD) == task_names(NEW) == (NEW, OLD)
    assert task_name_lookup({NEW: 1}, OLD) == 1
    assert task_name_lookup({OLD: 2}, NEW) == 2
    assert task_name_lookup({NEW: 3}, None) is None


def test_an_old_named_row_keeps_its_family_retry_rule_and_display() -> None:
    assert families.family_for_task(OLD) == families.family_for_task(NEW)
    assert display.job_family(OLD) == "Diagnostic"
    assert job_retry_rule(OLD) == job_retry_rule(NEW) and job_retry_rule(OLD).safe
    assert display.task_short_name(OLD) == "diagnostic_run_execute"
    # The jobs home leaves out beat's bookkeeping under its former names too.
    assert "workers.tasks.record_queue_depths" in families.housekeeping_task_names()
    # A retry runs under the current name.
    assert registered_task(OLD).name == NEW


@pytest.mark.django_db
def test_an_old_named_task_result_finds_its_subject_and_is_listed_in_its_family() -> None:
    row = job_row(OLD, "SUCCESS")
    DiagnosticRun.objects.create(task_id=row.task_id)
    subject = job_subject_get(task_name=row.task_name, task_id=row.task_id)
    assert subject is not None and subject.label.startswith("Diagnostic")

    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_taskresult", "view_diagnosticrun"))
    )
    viewer = get_user_model().objects.get(pk=viewer.pk)
    assert list(task_results_viewable(TaskResult.objects.all(), user=viewer)) == [row]
    # Whoever may see only the system family's jobs does not see it.
    system = get_user_model().objects.create_user("system", is_staff=True)
    system.user_permissions.add(
        *Permission.objects.filter(codename__in=("view_taskresult", "view_operations"))
    )
    system = get_user_model().objects.get(pk=system.pk)
    assert not task_results_viewable(TaskResult.objects.all(), user=system).exists()


@pytest.mark.django_db
def test_the_task_filter_lists_a_task_once_and_finds_its_rows_under_either_name() -> None:
    old = job_row(OLD, "SUCCESS")
    new = job_row(NEW, "SUCCESS")
    request = RequestFactory().get("/admin/django_celery_results/taskresult/")
    request.user = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    names = [name for name, _ in TaskFilter.lookups(None, request, None)]  # type: ignore[arg-type]
    assert NEW in names and OLD not in names
    task_filter = TaskFilter(request, {"task": [NEW]}, TaskResult, None)  # type: ignore[arg-type]
    assert set(task_filter.queryset(request, TaskResult.objects.all())) == {old, new}


@pytest.mark.django_db
def test_run_times_count_a_task_under_both_names_as_one() -> None:
    job_row(OLD, "SUCCESS", seconds=2)
    job_row(NEW, "SUCCESS", seconds=4)
    hour = [row for row in runtime_percentiles(now=timezone.now()) if row.period == "hour"]
    assert [(row.task_name, row.runs) for row in hour] == [(NEW, 2)]


@pytest.mark.django_db
def test_a_lost_old_named_job_ends_its_diagnostic_run() -> None:
    row = job_row(OLD, "STARTED", created_ago=timedelta(hours=2), worker="gone@host")
    run = DiagnosticRun.objects.create(task_id=row.task_id, state=DiagnosticRun.State.RUNNING)

    assert jobs_mark_lost() == [row.task_id]

    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.FAILED and run.error.startswith("worker lost")


def test_a_message_queued_under_the_old_name_runs(worker: WorkerProcess) -> None:
    from workers.celery import app
    from workers.outbox import OutboundJob

    run = DiagnosticRun.objects.create(lines=3, duration_seconds=0.1)
    # What a web process of the previous release recorded and sent, before the rename.
    job_record_pending(
        OutboundJob(app.tasks[OLD], "old-named-1", [run.pk], {}, {"queue": "default"}),
        requester=Requester.system("test"),
    )
    app.send_task(OLD, args=[run.pk], task_id="old-named-1", queue="default")

    wait_until(
        lambda: TaskResult.objects.filter(task_id="old-named-1", status="SUCCESS").exists(),
        timeout=30,
        message="the old-named job to succeed",
    )
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.SUCCEEDED and run.summary == {
        "run": run.pk,
        "lines": 3,
        "attempts": 1,
    }
