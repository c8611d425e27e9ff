"""Retry, discard and delete old records: who may, which jobs, what is recorded."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.servers import WorkerProcess
from tests.workers.jobs import job_row
from workers import job_actions
from workers.job_actions import JobActionRefused, job_retry
from workers.models import Job, JobLogChunk, WorkerHeartbeat

pytestmark = pytest.mark.django_db(transaction=True)

DIAGNOSTIC = "workers.tasks.diagnostic_run_execute"
APPLY = "infra_tasks.terraform.tasks.run_apply_execute"
COVER = "media_pipeline.tasks.course_cover_variants_build"


def staff(name: str, *codenames: str) -> object:
    user = get_user_model().objects.create_user(name, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)  # fresh permission cache


@pytest.fixture
def broker(worker: WorkerProcess) -> None:
    """The queues, and a worker that runs (and so clears away) what a test queued."""


@pytest.fixture
def operator() -> object:
    return staff(
        "operator",
        "view_taskresult",
        "act_on_diagnostic_jobs",
        "act_on_terraform_jobs",
        "act_on_courses_jobs",
        # A retry starts the job again: the families' start permissions.
        "run_diagnostic",
        "regenerate_cover_variants",
        "plan_terraformworkspace",
    )


def test_retry_queues_the_same_arguments_on_the_same_queue_linked_both_ways(
    operator: object, broker: None
) -> None:
    failed = job_row(COVER, "FAILURE", queue="media", args=[7, "abc"])
    new_id = job_retry(task_id=failed.task_id, user=operator)

    new_job = Job.objects.get(task_id=new_id)
    assert new_job.retry_of is not None and new_job.retry_of.task_id == failed.task_id
    assert list(Job.objects.get(task_id=failed.task_id).retries.all()) == [new_job]
    assert (new_job.queue, new_job.requester) == ("media", "User: operator")
    new_result = TaskResult.objects.get(task_id=new_id)
    assert (json.loads(new_result.task_args), new_result.status) == ([7, "abc"], "PENDING")
    entry = LogEntry.objects.get(
        content_type__model="taskresult", object_id=str(failed.pk), action_flag=CHANGE
    )
    assert entry.user.username == "operator"
    assert entry.change_message == f"Retried as job {new_id}"


def test_retry_reads_arguments_a_worker_rewrote_as_a_python_repr(
    operator: object, broker: None
) -> None:
    failed = job_row(COVER, "FAILURE", queue="media")
    TaskResult.objects.filter(pk=failed.pk).update(task_args=json.dumps("(3, 'f00d')"))
    new_id = job_retry(task_id=failed.task_id, user=operator)
    assert json.loads(TaskResult.objects.get(task_id=new_id).task_args) == [3, "f00d"]


def test_terraform_apply_is_not_retried_and_says_plan_again(operator: object) -> None:
    failed = job_row(APPLY, "FAILURE", queue="infra")
    with pytest.raises(JobActionRefused, match="Plan again instead"):
        job_retry(task_id=failed.task_id, user=operator)
    assert Job.objects.count() == 1


def test_a_job_is_retried_once_and_only_when_failed_or_lost(operator: object, broker: None) -> None:
    failed = job_row(DIAGNOSTIC, "FAILURE")
    job_retry(task_id=failed.task_id, user=operator)
    with pytest.raises(JobActionRefused, match="retried already"):
        job_retry(task_id=failed.task_id, user=operator)
    succeeded = job_row(DIAGNOSTIC, "SUCCESS")
    with pytest.raises(JobActionRefused, match="Only a failed"):
        job_retry(task_id=succeeded.task_id, user=operator)


def test_a_job_started_on_a_worker_that_is_gone_is_lost_and_may_be_retried(
    operator: object, broker: None
) -> None:
    now = timezone.now()
    WorkerHeartbeat.objects.create(hostname="alive@host", pid=1, started_at=now, last_seen_at=now)
    on_live_worker = job_row(DIAGNOSTIC, "STARTED", worker="alive@host")
    orphan = job_row(DIAGNOSTIC, "STARTED", worker="gone@host")
    with pytest.raises(JobActionRefused, match="Only a failed"):
        job_retry(task_id=on_live_worker.task_id, user=operator)
    assert job_retry(task_id=orphan.task_id, user=operator)
    # On the live worker, but its process died: nobody renews its claim.
    Job.objects.filter(task_id=on_live_worker.task_id).update(
        claimed_by="alive@host:123", claimed_until=now - timedelta(minutes=10)
    )
    assert job_retry(task_id=on_live_worker.task_id, user=operator)


def test_view_only_staff_and_other_families_cannot_act(broker: None) -> None:
    viewer = staff("viewer", "view_taskresult")
    diagnostics_only = staff("diag", "view_taskresult", "act_on_diagnostic_jobs")
    failed_diag = job_row(DIAGNOSTIC, "FAILURE")
    failed_cover = job_row(COVER, "FAILURE", queue="media")
    with pytest.raises(JobActionRefused, match="not act on them"):
        job_retry(task_id=failed_diag.task_id, user=viewer)
    with pytest.raises(JobActionRefused, match="Courses"):
        job_retry(task_id=failed_cover.task_id, user=diagnostics_only)
    assert not job_actions.may_act_on_jobs(viewer)
    outcome = job_actions.jobs_discard(
        task_ids=[failed_diag.task_id, failed_cover.task_id], user=diagnostics_only
    )
    assert outcome.done == [failed_diag.task_id]
    assert sum(outcome.refused.values()) == 1


def test_acting_on_a_family_without_leave_to_start_its_jobs_allows_no_retry(
    broker: None,
) -> None:
    """Retrying starts the job anew: it needs what Run now needs, so System jobs (superusers
    only) and a diagnostic without workers.run_diagnostic are discarded but not retried."""
    system_actor = staff("system-actor", "view_taskresult", "act_on_system_jobs")
    diagnostic_actor = staff("diag-actor", "view_taskresult", "act_on_diagnostic_jobs")
    failed_system = job_row("workers.tasks.job_records_cleanup", "FAILURE")
    failed_diag = job_row(DIAGNOSTIC, "FAILURE")
    for user, failed in ((system_actor, failed_system), (diagnostic_actor, failed_diag)):
        with pytest.raises(JobActionRefused, match="you may not start those"):
            job_retry(task_id=failed.task_id, user=user)
        assert not job_actions.retry_candidates(TaskResult.objects.all(), user=user).exists()
        outcome = job_actions.jobs_retry(task_ids=[failed.task_id], user=user)
        assert outcome.done == [] and sum(outcome.refused.values()) == 1
        assert job_actions.discard_candidates(TaskResult.objects.all(), user=user).exists()
    assert Job.objects.count() == 2  # no job was queued


def test_discard_keeps_the_record_and_stops_it_being_offered_for_retry(
    operator: object,
) -> None:
    failed = job_row(DIAGNOSTIC, "FAILURE")
    outcome = job_actions.jobs_discard(task_ids=[failed.task_id], user=operator)
    assert outcome.done == [failed.task_id]
    job = Job.objects.get(task_id=failed.task_id)
    assert job.discarded_at is not None and job.discarded_by_label == "operator"
    assert TaskResult.objects.filter(task_id=failed.task_id).exists()
    assert LogEntry.objects.get(object_id=str(failed.pk)).change_message == "Discarded"
    with pytest.raises(JobActionRefused, match="discarded"):
        job_retry(task_id=failed.task_id, user=operator)
    everything = TaskResult.objects.all()
    assert not job_actions.retry_candidates(everything, user=operator).exists()


def test_delete_old_records_removes_finished_jobs_past_the_minimum_age_only(
    operator: object,
) -> None:
    old = job_row(DIAGNOSTIC, "SUCCESS", created_ago=timedelta(days=8))
    JobLogChunk.objects.create(task_id=old.task_id, start_line=0, end_line=1, text="x")
    recent = job_row(DIAGNOSTIC, "SUCCESS", created_ago=timedelta(days=2))
    running = job_row(DIAGNOSTIC, "STARTED", created_ago=timedelta(days=8))
    outcome = job_actions.jobs_delete_old(
        task_ids=[old.task_id, recent.task_id, running.task_id], user=operator
    )
    assert outcome.done == [old.task_id]
    assert not TaskResult.objects.filter(task_id=old.task_id).exists()
    assert not Job.objects.filter(task_id=old.task_id).exists()
    assert not JobLogChunk.objects.filter(task_id=old.task_id).exists()
    assert TaskResult.objects.filter(task_id__in=[recent.task_id, running.task_id]).count() == 2
    entry = LogEntry.objects.get(object_id=str(old.pk))
    assert (entry.action_flag, entry.user.username) == (DELETION, "operator")


def test_a_job_record_is_deleted_only_through_delete_old_records_never_django_s_delete() -> None:
    from django.test import Client
    from django.urls import reverse

    pending = job_row(DIAGNOSTIC, "PENDING", created_ago=timedelta(days=8))
    deleter: Any = staff("deleter", "view_taskresult", "delete_taskresult", "view_diagnosticrun")
    root = get_user_model().objects.create_superuser("root")
    page = reverse("admin:django_celery_results_taskresult_change", args=[pending.pk])
    delete = reverse("admin:django_celery_results_taskresult_delete", args=[pending.pk])
    changelist = reverse("admin:django_celery_results_taskresult_changelist")

    for user in (deleter, root):
        client = Client()
        client.force_login(user)
        assert delete not in client.get(page).content.decode()  # no Delete button
        assert client.post(delete, {"post": "yes"}).status_code == 403
        listed = client.get(changelist).content.decode()
        assert 'value="delete_selected"' not in listed
        client.post(
            changelist,
            {"action": "delete_selected", "_selected_action": [pending.pk], "post": "yes"},
        )
    assert TaskResult.objects.filter(pk=pending.pk).exists()
    assert Job.objects.filter(task_id=pending.task_id).exists()


def test_a_retry_s_page_names_the_record_its_original_job_was_for(
    operator: object, broker: None
) -> None:
    from workers.models import DiagnosticRun
    from workers.selectors import job_summary_get

    failed = job_row(DIAGNOSTIC, "FAILURE")
    run = DiagnosticRun.objects.create(task_id=failed.task_id, state="failed")
    failed.task_args = json.dumps([run.pk])
    failed.save(update_fields=["task_args"])

    retry = job_retry(task_id=failed.task_id, user=operator)
    summary = job_summary_get(task_id=retry)

    assert summary is not None and summary.subject is not None
    assert summary.subject.label.startswith(f"Diagnostic run #{run.pk}")


@pytest.mark.parametrize(
    ("model", "perm"),
    [
        ("workers/diagnosticrun", "delete_diagnosticrun"),
        ("rds/databaseaction", "delete_databaseaction"),
    ],
)
def test_a_queued_job_s_record_cannot_be_deleted_from_the_admin(model: str, perm: str) -> None:
    """Deleting it would quietly cancel its job (the task finds no row), and lose who asked."""
    from django.test import Client

    from infra_tasks.rds.models import DatabaseAction
    from tests.infra_tasks.rds.support import register
    from workers.models import DiagnosticRun

    if model == "workers/diagnosticrun":
        row: Any = DiagnosticRun.objects.create(task_id="queued-1")
    else:
        row = DatabaseAction.objects.create(database=register("kept"), action="stop", task_id="q-2")
    app_label, model_name = model.split("/")
    client = Client()
    client.force_login(staff("deleter", f"view_{model_name}", perm))  # type: ignore[arg-type]
    url = f"/admin/{app_label}/{model_name}/{row.pk}/delete/"
    assert client.post(url, {"post": "yes"}).status_code == 403
    assert type(row).objects.filter(pk=row.pk).exists()


def test_the_bulk_confirmation_counts_its_jobs_in_words_that_agree() -> None:
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(
        staff("bulk", "view_taskresult", "view_diagnosticrun", "act_on_diagnostic_jobs")  # type: ignore[arg-type]
    )
    changelist = reverse("admin:django_celery_results_taskresult_changelist")
    failed = [job_row(DIAGNOSTIC, "FAILURE") for _ in range(2)]

    succeeded = job_row(DIAGNOSTIC, "SUCCESS")

    def confirmation(selected: list[TaskResult]) -> tuple[str, str]:
        page = client.post(
            changelist,
            {"action": "discard_jobs", "_selected_action": [row.pk for row in selected]},
        ).content.decode()
        count = re.search(r'<p id="bulk-count">([^<]*)</p>', page)
        assert count is not None, page
        button = re.search(r'id="bulk-confirm" value="([^"]*)"', page)
        return count.group(1), button.group(1) if button else ""

    assert confirmation(failed[:1]) == (
        "The selected job will be discarded.",
        "Yes, discard 1 job",
    )
    assert confirmation(failed) == ("All 2 selected jobs will be discarded.", "Yes, discard 2 jobs")
    assert confirmation([*failed[:1], succeeded]) == (
        "1 of the 2 selected jobs will be discarded; 1 is left alone.",
        "Yes, discard 1 job",
    )
    assert confirmation([succeeded]) == ("The selected job is left alone.", "")


def test_the_bulk_confirmation_says_why_each_group_of_jobs_is_left_alone() -> None:
    from django.test import Client
    from django.urls import reverse

    client = Client()
    client.force_login(
        staff("bulk", "view_taskresult", "view_diagnosticrun", "act_on_diagnostic_jobs")  # type: ignore[arg-type]
    )
    failed = [job_row(DIAGNOSTIC, "FAILURE") for _ in range(2)]
    succeeded = [job_row(DIAGNOSTIC, "SUCCESS") for _ in range(2)]
    discarded = job_row(DIAGNOSTIC, "FAILURE")
    Job.objects.filter(task_id=discarded.task_id).update(
        discarded_at=timezone.now(), discarded_by_label="ops"
    )
    selected = [*failed, *succeeded, discarded]

    page = client.post(
        reverse("admin:django_celery_results_taskresult_changelist"),
        {"action": "discard_jobs", "_selected_action": [row.pk for row in selected]},
    ).content.decode()

    # It said "2 of the 5 selected jobs will be discarded; 3 are left alone." and no more.
    assert "2 of the 5 selected jobs will be discarded; 3 are left alone." in page
    reasons = re.search(r'<ul id="bulk-left-alone">(.*?)</ul>', page)
    assert reasons is not None, page
    assert re.findall(r"<li>([^<]*)</li>", reasons.group(1)) == [
        "2 left alone: Succeeded (SUCCESS), and only a failed, cancelled or lost job is discarded",
        f"1 left alone: job {discarded.task_id} was discarded already, by ops",
    ]


@pytest.mark.parametrize(
    ("to_do", "matching", "across", "sentence"),
    [
        (1, 1, True, "The job matching the filter will be retried."),
        (3, 5, True, "3 of the 5 jobs matching the filter will be retried; 2 are left alone."),
        (0, 4, False, "None of the 4 selected jobs will be retried."),
        (10_001, 10_001, True, "More than 10,000 of the jobs matching the filter will be retried."),
        (
            700,
            10_001,
            True,
            "700 of the more than 10,000 jobs matching the filter will be retried.",
        ),
    ],
)
def test_the_bulk_count_sentence_agrees_with_its_numbers(
    to_do: int, matching: int, across: bool, sentence: str
) -> None:
    from workers.job_bulk_admin import bulk_count_sentence

    assert (
        bulk_count_sentence(to_do=to_do, matching=matching, across=across, verb="retried")
        == sentence
    )


def test_a_job_page_that_offers_no_retry_says_so_without_claiming_a_retry_was_refused(
    operator: object, admin_client: Any
) -> None:
    # The page read "Not retried: This job was retried already", as if a retry had just
    # been tried and refused; nobody had pressed anything.
    failed = job_row(DIAGNOSTIC, "FAILURE")
    job_actions.jobs_discard(task_ids=[failed.task_id], user=operator)

    url = f"/admin/django_celery_results/taskresult/{failed.pk}/change/"
    html = admin_client.get(url).content.decode()
    refusal = re.search(r'<p id="job-retry-refusal">([^<]*)</p>', html)

    assert refusal is not None, html
    assert refusal.group(1) == "Retry not offered: This job was discarded; it is not retried."


def test_a_job_page_has_a_schedule_section_only_for_a_job_a_schedule_sent(
    admin_client: Any,
) -> None:
    # Every job's page had a "Schedule" section, holding a bare "-" for one nobody scheduled.
    by_hand = job_row("workers.tasks.queue_depths_record", "SUCCESS")
    scheduled = job_row("workers.tasks.queue_depths_record", "SUCCESS")
    TaskResult.objects.filter(pk=scheduled.pk).update(periodic_task_name="Record depths")

    def page(row: TaskResult) -> str:
        url = f"/admin/django_celery_results/taskresult/{row.pk}/change/"
        return str(admin_client.get(url).content.decode())

    assert "Periodic Task Name" not in page(by_hand)
    assert "Record depths" in page(scheduled)


def test_a_job_whose_arguments_its_task_no_longer_takes_is_not_offered_for_retry(
    operator: Any, admin_client: Any, broker: None
) -> None:
    # Its Retry answered 500 (job_enqueue refused the arguments); a release that changes
    # what a task takes, or a schedule saved with wrong ones, leaves such jobs behind.
    misfit = job_row(DIAGNOSTIC, "FAILURE", args=[1, "since removed"])
    fits = job_row(DIAGNOSTIC, "FAILURE", args=[1])
    reason = (
        "Its arguments do not fit the task in this version of the code: "
        "workers.tasks.diagnostic_run_execute does not take these arguments:"
    )

    page = admin_client.get(f"/admin/django_celery_results/taskresult/{misfit.pk}/change/")
    refusal = re.search(r'<p id="job-retry-refusal">([^<]*)</p>', page.content.decode())
    assert refusal is not None and refusal.group(1).startswith(f"Retry not offered: {reason}")
    response = admin_client.post(f"/ops/jobs/{misfit.task_id}/retry/", follow=True)
    assert response.status_code == 200
    assert not Job.objects.filter(retry_of__task_id=misfit.task_id).exists()

    outcome = job_actions.jobs_retry(task_ids=[misfit.task_id, fits.task_id], user=operator)
    assert len(outcome.done) == 1
    assert Job.objects.get(task_id=outcome.done[0]).retry_of.task_id == fits.task_id  # type: ignore[union-attr]
    assert sum(outcome.refused.values()) == 1


def test_a_bulk_action_says_why_each_job_it_left_alone_was_left_alone(
    operator: object, broker: None
) -> None:
    """Jobs picked but not acted on are counted by reason; a reason only one job has
    names it (what a second tab's confirmation reads after the first did the work)."""
    retried = [job_row(DIAGNOSTIC, "FAILURE", args=[0]) for _ in range(3)]
    for row in retried:
        job_retry(task_id=row.task_id, user=operator)
    succeeded = job_row(DIAGNOSTIC, "SUCCESS")
    apply = job_row(APPLY, "FAILURE", queue="infra")
    outcome = job_actions.jobs_retry(
        task_ids=[r.task_id for r in retried] + [succeeded.task_id, apply.task_id],
        user=operator,
    )
    assert outcome.done == []
    assert dict(outcome.refused) == {
        "retried already": 3,
        "Succeeded (SUCCESS), and only a failed, cancelled or lost job is retried": 1,
        "run_apply_execute jobs are not retried. " + job_actions.job_retry_rule(APPLY).refusal: 1,
    }

    outcome = job_actions.jobs_discard(task_ids=[retried[0].task_id], user=operator)
    again = Job.objects.get(retry_of__task_id=retried[0].task_id).task_id
    assert dict(outcome.refused) == {
        f"job {retried[0].task_id} was retried already, as job {again}": 1
    }
    recent = job_row(DIAGNOSTIC, "SUCCESS")
    outcome = job_actions.jobs_delete_old(task_ids=[recent.task_id], user=operator)
    assert dict(outcome.refused) == {"queued less than 7 days ago": 1}


def test_a_cancelled_job_a_schedule_sent_to_a_queue_no_worker_reads_is_retried_on_its_own(
    operator: object, broker: None
) -> None:
    """Retried on the same queue, it was refused (job_enqueue takes only our queues): it
    goes to its task's own queue instead."""
    cancelled = job_row(DIAGNOSTIC, "REVOKED", queue="bogus", args=[0])
    new_id = job_retry(task_id=cancelled.task_id, user=operator)
    assert Job.objects.get(task_id=new_id).queue == "default"
    other = job_row(DIAGNOSTIC, "REVOKED", queue="bogus", args=[0])
    outcome = job_actions.jobs_retry(task_ids=[other.task_id], user=operator)
    assert Job.objects.get(task_id=outcome.done[0]).queue == "default"


def test_a_job_that_ended_on_a_refusal_its_task_declares_is_not_retried_in_bulk_either(
    operator: object, broker: None
) -> None:
    """A task safe to retry names the failures a retry would meet again (its input was
    refused); other failures of the same task are retried as before."""
    from workers import retries

    class InputRefused(ValueError):
        pass

    class TooSmall(InputRefused):  # a subclass counts as the declared refusal
        pass

    def ended_on(exc_module: str, exc_type: str) -> TaskResult:
        row = job_row(DIAGNOSTIC, "FAILURE", args=[0])
        stored = {"exc_type": exc_type, "exc_message": ["no"], "exc_module": exc_module}
        TaskResult.objects.filter(pk=row.pk).update(result=json.dumps(stored))
        row.refresh_from_db()
        return row

    declared = retries._rules[DIAGNOSTIC]
    retries.job_retry_declare(
        [DIAGNOSTIC], safe=True, refused=(InputRefused,), after_refusal="Send another file."
    )
    try:
        refused = ended_on(__name__, "TooSmall")
        crashed = ended_on("builtins", "ValueError")
        rule = job_actions.job_retry_rule(DIAGNOSTIC)
        assert rule.input_refused(refused.result) == "Send another file."
        assert rule.input_refused(crashed.result) == ""
        assert rule.input_refused("not json") == ""
        # The bulk confirmation's count, in SQL, agrees: a message that quotes the
        # refusal's name does not make a crash a refusal.
        quoting = ended_on("builtins", "ValueError")
        TaskResult.objects.filter(pk=quoting.pk).update(
            result=json.dumps(
                {
                    "exc_type": "ValueError",
                    "exc_message": ['"exc_type": "TooSmall", "exc_module": "' + __name__ + '"'],
                    "exc_module": "builtins",
                }
            )
        )
        picked = TaskResult.objects.filter(
            task_id__in=[refused.task_id, crashed.task_id, quoting.task_id]
        )
        assert set(
            job_actions.retry_candidates(picked, user=operator).values_list("task_id", flat=True)
        ) == {crashed.task_id, quoting.task_id}
        assert job_actions.job_retry_refusal(
            result=refused, job=Job.objects.get(task_id=refused.task_id), user=operator
        ) == ("Its input was refused; running it again would end the same way. Send another file.")

        outcome = job_actions.jobs_retry(task_ids=[refused.task_id, crashed.task_id], user=operator)
        assert dict(outcome.refused) == {
            "its input was refused, and would be again. Send another file.": 1
        }
        assert [Job.objects.get(task_id=t).retry_of.task_id for t in outcome.done] == [  # type: ignore[union-attr]
            crashed.task_id
        ]
    finally:
        retries._rules[DIAGNOSTIC] = declared


def test_a_job_page_names_its_id_task_and_schedule_in_the_admin_s_own_words(
    admin_client: Any,
) -> None:
    # It showed django-celery-results' field help: "Celery ID for the Task that was run",
    # "Name of the Task which was run".
    scheduled = job_row("workers.tasks.queue_depths_record", "SUCCESS")
    TaskResult.objects.filter(pk=scheduled.pk).update(periodic_task_name="Record depths")

    html = admin_client.get(
        f"/admin/django_celery_results/taskresult/{scheduled.pk}/change/"
    ).content.decode()

    for internal in ("Celery ID", "Name of the Task", "Name of the Periodic Task"):
        assert internal not in html
    fields = dict(
        re.findall(r"<label>([^<]*):</label>\s*<div class=\"readonly\">([^<]*)</div>", html)
    )
    assert fields["Job id"] == scheduled.task_id
    assert fields["Task"] == "workers.tasks.queue_depths_record"
    assert fields["Sent by the schedule"] == "Record depths"
