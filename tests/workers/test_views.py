"""Job views and admin pages: staff only, permission-checked, 403 for everyone else."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_results.models import TaskResult

from tests.support.jobs import job_record
from workers.joblog import JobLogWriter
from workers.models import DiagnosticRun, Job, RequesterKind
from workers.outbox import broker_health

pytestmark = pytest.mark.django_db

DIAGNOSTIC_VIEWER = ("django_celery_results.view_taskresult", "workers.view_diagnosticrun")


def make_user(username: str, *, staff: bool, perms: tuple[str, ...] = ()) -> User:
    user = get_user_model().objects.create_user(username, password="pw-123456", is_staff=staff)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def finished_job() -> TaskResult:
    Job.objects.create(
        task_id="job-1",
        task_name="workers.tasks.diagnostic_run_execute",
        queue="default",
        requester_kind=RequesterKind.USER,
        requester_label="carol",
    )
    with JobLogWriter("job-1") as log:
        for n in range(3):
            log.line(f"line {n}")
    return TaskResult.objects.create(
        task_id="job-1",
        task_name="workers.tasks.diagnostic_run_execute",
        status="SUCCESS",
        result="42",
    )


@pytest.mark.parametrize(
    ("staff", "perms"),
    [(False, ("django_celery_results.view_taskresult",)), (True, ())],
    ids=["non-staff-with-permission", "staff-without-permission"],
)
def test_log_views_refuse_with_403(
    finished_job: TaskResult, staff: bool, perms: tuple[str, ...]
) -> None:
    client = client_for(make_user("eve", staff=staff, perms=perms))
    assert client.get(reverse("workers:job-log", args=["job-1"])).status_code == 403
    assert client.get(reverse("workers:job-log-download", args=["job-1"])).status_code == 403


def test_log_views_refuse_anonymous_with_403(finished_job: TaskResult) -> None:
    # What the page polls: JSON, never a login page in its place.
    assert Client().get(reverse("workers:job-log", args=["job-1"])).status_code == 403


@pytest.mark.parametrize("name", ["workers:job-detail", "workers:job-log-download"])
def test_a_job_link_opened_while_logged_out_leads_to_the_login_and_back(
    finished_job: TaskResult, name: str
) -> None:
    url = reverse(name, args=["job-1"])
    response = Client().get(url)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={url}"


@pytest.mark.parametrize(
    ("staff", "perms"),
    [(False, ("workers.run_diagnostic",)), (True, ())],
    ids=["non-staff-with-permission", "staff-without-permission"],
)
def test_diagnostic_trigger_refuses_with_403_and_queues_nothing(
    staff: bool, perms: tuple[str, ...]
) -> None:
    client = client_for(make_user("mallory", staff=staff, perms=perms))
    assert client.post(reverse("workers:diagnostic-trigger")).status_code == 403
    assert not DiagnosticRun.objects.exists()
    assert not Job.objects.exists()


def test_the_diagnostic_button_by_whom_may_not_open_its_job_ends_on_the_jobs_home(
    sqs_queues: Any,
) -> None:
    """The Jobs home offers Run diagnostic job to whoever may run it and see jobs; one who
    may not open diagnostic jobs (their family's view permission) is told what was queued
    there, without a link that would refuse them, instead of being sent to a 403."""
    client = client_for(
        make_user(
            "dave",
            staff=True,
            perms=("workers.run_diagnostic", "django_celery_results.view_taskresult"),
        )
    )
    assert 'id="run-diagnostic"' in client.get(reverse("admin:index")).content.decode()

    response = client.post(reverse("workers:diagnostic-trigger"), follow=True)

    run = DiagnosticRun.objects.get()
    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    page = response.content.decode()
    assert f"A diagnostic job queued: job {run.task_id}." in page
    assert reverse("workers:job-detail", args=[run.task_id]) not in page


def test_the_diagnostic_button_with_sqs_down_says_so_on_the_jobs_home_and_queues_nothing() -> None:
    # It went to the job list, which answers 403 to whom may run the job but not list jobs.
    client = client_for(make_user("fay", staff=True, perms=("workers.run_diagnostic",)))
    broker_health.fail(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
    try:
        response = client.post(reverse("workers:diagnostic-trigger"), follow=True)
    finally:
        broker_health.reset()

    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    assert response.status_code == 200
    assert "The job queue is unreachable" in response.content.decode()
    assert not DiagnosticRun.objects.exists()


def test_the_diagnostic_button_with_its_sqs_queue_missing_says_how_to_make_it_not_to_wait(
    sqs_queues: Any, settings: Any
) -> None:
    # An endpoint restarted empty: "The job queue is unreachable (QueueDoesNotExist) … Try
    # again once the broker is back" sent a person waiting for an outage that was not one.
    client = client_for(make_user("fay", staff=True, perms=("workers.run_diagnostic",)))
    settings.SQS_QUEUE_PREFIX = "no-such-queues-"
    broker_health.reset()
    try:
        response = client.post(reverse("workers:diagnostic-trigger"), follow=True)
    finally:
        broker_health.reset()

    page = response.content.decode()
    assert "The job queue&#x27;s SQS queue does not exist (QueueDoesNotExist)" in page
    assert "Make the queues again with `manage.py sqs_queues`, or deploy the stack." in page
    assert not DiagnosticRun.objects.exists()


def test_the_diagnostic_button_leads_to_the_job_for_whom_may_open_it(sqs_queues: Any) -> None:
    client = client_for(
        make_user("erin", staff=True, perms=("workers.run_diagnostic", *DIAGNOSTIC_VIEWER))
    )
    response = client.post(reverse("workers:diagnostic-trigger"))
    run = DiagnosticRun.objects.get()
    assert response["Location"] == reverse("workers:job-detail", args=[run.task_id])
    assert client.get(response["Location"]).status_code == 302  # on to the job's admin page


def test_staff_with_permission_reads_the_log_since_an_offset(finished_job: TaskResult) -> None:
    client = client_for(make_user("dave", staff=True, perms=DIAGNOSTIC_VIEWER))
    data = client.get(reverse("workers:job-log", args=["job-1"]), {"since": 1}).json()
    assert data["lines"] == ["line 1", "line 2"]
    assert data["next"] == 3
    assert data["status"] == "SUCCESS" and data["finished"] and data["result"] == "42"


def test_a_log_answer_over_its_size_budget_says_more_and_the_next_poll_continues(
    finished_job: TaskResult, settings: Any
) -> None:
    settings.JOB_LOG_MAX_POLL_BYTES = 14  # "line 0\nline 1\n"
    client = client_for(make_user("dave", staff=True, perms=DIAGNOSTIC_VIEWER))
    url = reverse("workers:job-log", args=["job-1"])
    first = client.get(url).json()
    assert (first["lines"], first["next"], first["more"]) == (["line 0", "line 1"], 2, True)
    second = client.get(url, {"since": first["next"]}).json()
    assert (second["lines"], second["next"], second["more"]) == (["line 2"], 3, False)


def test_log_download_is_the_whole_log_as_text(finished_job: TaskResult) -> None:
    client = client_for(make_user("dave", staff=True, perms=DIAGNOSTIC_VIEWER))
    response = client.get(reverse("workers:job-log-download", args=["job-1"]))
    assert response["Content-Type"].startswith("text/plain")
    assert "attachment" in response["Content-Disposition"]
    assert response.getvalue() == b"line 0\nline 1\nline 2\n"


def test_log_rejects_a_bad_offset(finished_job: TaskResult) -> None:
    client = client_for(make_user("dave", staff=True, perms=DIAGNOSTIC_VIEWER))
    assert client.get(reverse("workers:job-log", args=["job-1"]), {"since": "x"}).status_code == 400


def test_admin_job_list_shows_requester_and_queue_without_a_full_count(
    finished_job: TaskResult,
) -> None:
    admin = get_user_model().objects.create_superuser("root", password="pw-123456")
    client = client_for(admin)
    url = reverse("admin:django_celery_results_taskresult_changelist")
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    body = response.content.decode()
    assert "User: carol" in body and ">default<" in body
    assert "Run diagnostic job" in body
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)


def test_admin_job_page_has_the_live_log_panel(finished_job: TaskResult) -> None:
    admin = get_user_model().objects.create_superuser("root", password="pw-123456")
    response = client_for(admin).get(
        reverse("admin:django_celery_results_taskresult_change", args=[finished_job.pk])
    )
    body = response.content.decode()
    assert 'id="job-log"' in body
    assert reverse("workers:job-log", args=["job-1"]) in body
    assert "User: carol" in body


def test_job_detail_link_redirects_to_the_admin_page(finished_job: TaskResult) -> None:
    admin = get_user_model().objects.create_superuser("root", password="pw-123456")
    response = client_for(admin).get(reverse("workers:job-detail", args=["job-1"]))
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:django_celery_results_taskresult_change", args=[finished_job.pk]
    )


def test_healthz_answers_with_the_database_up() -> None:
    response = Client().get("/healthz/")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def job_at(status: str, *, started: float | None, done: float | None, **fields: object) -> str:
    """A job record in `status`, started/done that many seconds after it was queued."""
    from datetime import timedelta

    from django.utils import timezone

    task_id = f"job-{status.lower()}"
    Job.objects.create(
        task_id=task_id,
        task_name="workers.tasks.diagnostic_run_execute",
        queue="default",
        requester_kind=RequesterKind.USER,
        requester_label="carol",
    )
    result = TaskResult.objects.create(
        task_id=task_id, task_name="workers.tasks.diagnostic_run_execute", status=status, **fields
    )
    created = timezone.now() - timedelta(seconds=30)
    TaskResult.objects.filter(pk=result.pk).update(
        date_created=created,
        date_started=created + timedelta(seconds=started) if started is not None else None,
        # django-celery-results stamps date_done on every save, finished or not.
        date_done=created + timedelta(seconds=done) if done is not None else created,
    )
    return task_id


def poll(task_id: str) -> dict[str, object]:
    admin = get_user_model().objects.create_superuser("root", password="pw-123456")
    response = client_for(admin).get(reverse("workers:job-log", args=[task_id]))
    assert response.status_code == 200
    data: dict[str, object] = response.json()
    return data


def test_a_queued_job_reads_queued_with_no_end_time_though_its_row_has_one() -> None:
    data = poll(job_at("PENDING", started=None, done=None))
    html = str(data["summary_html"])
    assert data["status"] == "PENDING" and not data["finished"]
    assert "Queued (PENDING)" in html and "waiting for" in html
    assert "Finished" not in html and 'id="job-finished-at"' not in html


def test_a_queued_job_on_a_paused_queue_says_it_waits_for_the_resume() -> None:
    from workers.models import QueuePause

    task_id = job_at("PENDING", started=None, done=None)
    client = client_for(get_user_model().objects.create_superuser("root", password="pw-1234"))

    def summary() -> str:
        return str(client.get(reverse("workers:job-log", args=[task_id])).json()["summary_html"])

    assert 'id="job-queue-paused"' not in summary()
    QueuePause.objects.create(queue="default", paused_by_label="dana")
    html = summary()
    assert (
        '<div id="job-queue-paused">Queue default is paused (by dana): the job waits until it '
        "is resumed on the operations page.</div>"
    ) in html


def test_a_result_that_is_one_word_reads_as_the_word_not_as_quoted_json() -> None:
    html = str(poll(job_at("SUCCESS", started=1, done=2, result='"planned"'))["summary_html"])
    assert '<pre id="job-outcome">planned</pre>' in html


def test_a_running_job_reads_running_for_never_a_negative_duration() -> None:
    # As the result backend leaves it: date_done (the last save) before date_started.
    data = poll(job_at("STARTED", started=10, done=5, worker="w1@host"))
    html = str(data["summary_html"])
    assert "Running (STARTED)" in html and "w1@host" in html
    assert '<td id="job-duration">running for 2' in html  # ~20 s since it started
    assert "Finished" not in html


def test_a_finished_job_reads_its_duration_end_result_and_what_it_was_for() -> None:
    run = DiagnosticRun.objects.create(task_id="job-success", state=DiagnosticRun.State.SUCCEEDED)
    data = poll(job_at("SUCCESS", started=2, done=6.5, result='{"lines": 300}'))
    html = str(data["summary_html"])
    assert data["finished"] and data["result"] == '{\n  "lines": 300\n}'
    assert "Succeeded (SUCCESS)" in html and 'id="job-finished-at"' in html
    assert '<td id="job-duration">4.5 s</td>' in html
    assert f'href="{reverse("admin:workers_diagnosticrun_change", args=[run.pk])}"' in html
    assert '<strong id="job-subject-state">Succeeded</strong>' in html


def test_a_cancelled_job_reads_cancelled_with_the_reason() -> None:
    reason = '{"exc_type": "TaskRevokedError", "exc_message": ["Cancelled by grace."]}'
    data = poll(job_at("REVOKED", started=1, done=3, result=reason))
    html = str(data["summary_html"])
    assert data["finished"] and data["error"] == "Cancelled by grace."
    assert "Cancelled (REVOKED)" in html and "SUCCESS" not in html


def test_a_failed_job_reads_its_error_and_keeps_the_traceback_folded() -> None:
    error = '{"exc_type": "DiagnosticFailure", "exc_message": ["asked to fail"]}'
    data = poll(job_at("FAILURE", started=1, done=2, result=error, traceback="Traceback ..."))
    html = str(data["summary_html"])
    assert data["error"] == "DiagnosticFailure: asked to fail"
    assert "<details><summary>Traceback</summary>" in html


def test_the_job_page_is_not_named_after_the_state_it_had_at_page_load() -> None:
    task_id = job_at("PENDING", started=None, done=None)
    admin = get_user_model().objects.create_superuser("root", password="pw-123456")
    result = TaskResult.objects.get(task_id=task_id)
    page = client_for(admin).get(
        reverse("admin:django_celery_results_taskresult_change", args=[result.pk])
    )
    body = page.content.decode()
    assert "(PENDING)" not in body.replace("Queued (PENDING)", "")
    assert f"diagnostic_run_execute {task_id}" in body
    # Fields that change while the job runs are only in the live summary.
    for frozen in ("Completed DateTime", "Result Data", "Task State"):
        assert frozen not in body


def _job(task_id: str, task_name: str) -> TaskResult:
    return job_record(
        task_id, task_name, status="SUCCESS", queue="infra", log=f"output of {task_id}"
    )


def test_a_jobs_log_and_page_need_the_view_permission_of_its_family(
    finished_job: TaskResult,
) -> None:
    apply = _job("apply-1", "infra_tasks.terraform.tasks.run_apply_execute")
    diagnostics_only = client_for(make_user("dina", staff=True, perms=DIAGNOSTIC_VIEWER))

    for name in ("workers:job-log", "workers:job-log-download", "workers:job-detail"):
        assert diagnostics_only.get(reverse(name, args=["apply-1"])).status_code == 403
        assert diagnostics_only.get(reverse(name, args=["job-1"])).status_code in (200, 302)
    page = reverse("admin:django_celery_results_taskresult_change", args=[apply.pk])
    assert diagnostics_only.get(page).status_code in (302, 403, 404)
    listing = diagnostics_only.get(reverse("admin:django_celery_results_taskresult_changelist"))
    assert "job-1" in listing.content.decode() and "apply-1" not in listing.content.decode()

    terraform = client_for(
        make_user(
            "tess",
            staff=True,
            perms=("django_celery_results.view_taskresult", "terraform.view_terraformrun"),
        )
    )
    log = terraform.get(reverse("workers:job-log", args=["apply-1"])).json()
    assert log["lines"] == ["output of apply-1"]
    assert terraform.get(reverse("workers:job-log", args=["job-1"])).status_code == 403
    assert terraform.get(page).status_code == 200


def test_a_job_of_no_known_family_is_for_superusers_only() -> None:
    _job("odd-1", "elsewhere.tasks.mystery")
    everything = client_for(
        make_user(
            "vera",
            staff=True,
            perms=tuple(
                f"{p.content_type.app_label}.{p.codename}" for p in Permission.objects.all()
            ),
        )
    )
    assert everything.get(reverse("workers:job-log", args=["odd-1"])).status_code == 403
    root = client_for(get_user_model().objects.create_superuser("root", password="pw-123456"))
    assert root.get(reverse("workers:job-log", args=["odd-1"])).status_code == 200


def test_the_browser_s_favicon_request_finds_an_icon_not_a_404() -> None:
    from django.contrib.staticfiles import finders

    response = Client().get("/favicon.ico")

    assert response.status_code == 301
    assert response["Location"].endswith("workers/favicon.svg")
    assert finders.find("workers/favicon.svg")


def test_a_job_id_that_names_no_job_is_said_so_to_whom_may_look_at_jobs() -> None:
    # A database operator who mistyped a job id got a bare 403, as if it were a job of a
    # family they may not see.
    operator = client_for(
        make_user(
            "olga",
            staff=True,
            perms=("django_celery_results.view_taskresult", "rds.view_databaseaction"),
        )
    )
    missing = reverse("workers:job-detail", args=["0f0e0d0c-aaaa-bbbb-cccc-000000000000"])

    response = operator.get(missing, follow=True)

    assert response.status_code == 200
    assert response.redirect_chain == [
        (reverse("admin:django_celery_results_taskresult_changelist"), 302)
    ]
    assert "No job 0f0e0d0c-aaaa-bbbb-cccc-000000000000" in response.content.decode()
    # A job of a family they may not see is still refused, and so is anyone who may not
    # look at jobs at all.
    job_record("diag-1", "workers.tasks.diagnostic_run_execute", status="SUCCESS")
    assert operator.get(reverse("workers:job-detail", args=["diag-1"])).status_code == 403
    outsider = client_for(make_user("ned", staff=True, perms=("rds.view_databaseaction",)))
    assert outsider.get(missing).status_code == 403
