"""Job views and admin pages: staff only, permission-checked, 403 for everyone else."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django_celery_results.models import TaskResult

from workers.joblog import JobLogWriter
from workers.models import DiagnosticRun, Job, RequesterKind

pytestmark = pytest.mark.django_db


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
        task_name="workers.tasks.run_diagnostic",
        queue="default",
        requester_kind=RequesterKind.USER,
        requester_label="carol",
    )
    with JobLogWriter("job-1") as log:
        for n in range(3):
            log.line(f"line {n}")
    return TaskResult.objects.create(
        task_id="job-1", task_name="workers.tasks.run_diagnostic", status="SUCCESS", result="42"
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
    assert Client().get(reverse("workers:job-log", args=["job-1"])).status_code == 403


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


def test_staff_with_permission_reads_the_log_since_an_offset(finished_job: TaskResult) -> None:
    client = client_for(
        make_user("dave", staff=True, perms=("django_celery_results.view_taskresult",))
    )
    data = client.get(reverse("workers:job-log", args=["job-1"]), {"since": 1}).json()
    assert data["lines"] == ["line 1", "line 2"]
    assert data["next"] == 3
    assert data["status"] == "SUCCESS" and data["finished"] and data["result"] == "42"


def test_log_download_is_the_whole_log_as_text(finished_job: TaskResult) -> None:
    client = client_for(
        make_user("dave", staff=True, perms=("django_celery_results.view_taskresult",))
    )
    response = client.get(reverse("workers:job-log-download", args=["job-1"]))
    assert response["Content-Type"].startswith("text/plain")
    assert "attachment" in response["Content-Disposition"]
    assert response.getvalue() == b"line 0\nline 1\nline 2\n"


def test_log_rejects_a_bad_offset(finished_job: TaskResult) -> None:
    client = client_for(
        make_user("dave", staff=True, perms=("django_celery_results.view_taskresult",))
    )
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
