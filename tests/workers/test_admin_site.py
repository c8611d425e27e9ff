"""The admin site: /admin/ is the Jobs home, the apps are grouped by what a person does,
and a person sees only the jobs, places and starts their permissions allow."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.test import Client
from django_celery_results.models import TaskResult

from workers.families import HOUSEKEEPING_TASKS
from workers.models import Job, RequesterKind

pytestmark = pytest.mark.django_db


def staff(*perms: str) -> User:
    user = get_user_model().objects.create_user("pat", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return user


def home(user: User) -> str:
    client = Client()
    client.force_login(user)
    response = client.get("/admin/")
    assert response.status_code == 200
    return response.content.decode()


def captions(page: str) -> list[str]:
    return re.findall(r'<caption>\s*<a href="[^"]*" class="section"[^>]*>([^<]+)</a>', page)


def test_admin_index_is_the_jobs_home_with_recent_jobs_buttons_and_places(
    settings: object,
) -> None:
    settings.FLOWER_URL = "https://flower.example.com/"  # type: ignore[attr-defined]
    Job.objects.create(
        task_id="t-1",
        task_name="infra_tasks.terraform.tasks.run_apply_execute",
        queue="infra",
        requester_kind=RequesterKind.USER,
        requester_label="carol",
    )
    TaskResult.objects.create(
        task_id="t-1", task_name="infra_tasks.terraform.tasks.run_apply_execute", status="REVOKED"
    )
    page = home(get_user_model().objects.create_superuser("root"))

    assert "<h1>Jobs home</h1>" in page
    row = re.search(r'<tr data-task-id="t-1">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [
        re.sub(r"<[^>]+>", "", cell).strip()
        for cell in re.findall(r"<td[^>]*>(.*?)</td>", row[1], re.S)
    ]
    assert cells[:4] == ["run_apply_execute", "Terraform", "Cancelled (REVOKED)", "User: carol"]
    assert 'id="run-diagnostic"' in page and 'id="run-failing-diagnostic"' in page
    for place, url in (
        ("Operations", "/ops/operations/"),
        ("Infrastructure", "/ops/infrastructure/"),
        ("Flower", "https://flower.example.com/"),
    ):
        assert f'href="{url}" id="place-{place.lower()}"' in page
    assert "View site" not in page
    assert captions(page)[:5] == ["Jobs", "Terraform", "Databases", "Releases", "Courses"]
    assert len(captions(page)) == len(set(captions(page))), "every model in its one section"
    assert ">Jobs</a>" in page and ">Workspaces</a>" in page  # models named for people


def test_beats_bookkeeping_does_not_push_the_jobs_people_started_off_the_jobs_home() -> None:
    TaskResult.objects.create(
        task_id="mine", task_name="workers.tasks.diagnostic_run_execute", status="SUCCESS"
    )
    for n, task_name in enumerate(HOUSEKEEPING_TASKS * 5):  # newer than the person's job
        TaskResult.objects.create(task_id=f"tick-{n}", task_name=task_name, status="SUCCESS")

    page = home(get_user_model().objects.create_superuser("root"))

    assert '<tr data-task-id="mine">' in page
    assert '<tr data-task-id="tick-' not in page


def test_no_job_beat_runs_every_few_minutes_fills_the_jobs_home() -> None:
    """The database schedules' check (every 5 minutes) was missing from the bookkeeping
    list: a demo left alone for an hour showed 12 'databases_enforce' rows on the Jobs home,
    and after three its 15 rows were nothing else, the jobs people started pushed off."""
    from workers.jobs_discovery import jobs_modules_import
    from workers.periodic import declared_periodic_jobs

    jobs_modules_import()
    TaskResult.objects.create(
        task_id="mine", task_name="workers.tasks.diagnostic_run_execute", status="SUCCESS"
    )
    frequent = [job.job.name for job in declared_periodic_jobs() if job.every is not None]
    assert "infra_tasks.rds.tasks.databases_enforce" in frequent
    for n, task_name in enumerate(frequent * 3):  # newer than the person's job
        TaskResult.objects.create(task_id=f"tick-{n}", task_name=task_name, status="SUCCESS")

    page = home(get_user_model().objects.create_superuser("root"))

    assert '<tr data-task-id="mine">' in page
    shown = re.findall(r'<tr data-task-id="tick-(\d+)">', page)
    assert not shown, [frequent[int(n) % len(frequent)] for n in shown]


def test_a_person_sees_only_the_jobs_places_and_starts_they_may_use() -> None:
    page = home(staff("rds.view_manageddatabase", "rds.operate_manageddatabase"))

    assert 'id="recent-jobs"' not in page, "no permission to see jobs"
    assert 'id="run-diagnostic"' not in page
    assert "Operations" not in page and "Flower" not in page
    assert "Stop or start a database" in page and "Plan a terraform workspace" not in page
    assert captions(page) == ["Databases"]


@pytest.mark.parametrize(
    ("operate", "view", "start"),
    [
        ("terraform.plan_terraformworkspace", "terraform.view_terraformworkspace", "Plan a"),
        ("rds.operate_manageddatabase", "rds.view_manageddatabase", "Stop or start a database"),
    ],
)
def test_a_start_is_offered_only_where_its_page_opens(operate: str, view: str, start: str) -> None:
    """The operate permission alone opens no list of records to start from: its link on
    the Jobs home would answer 403, so it is not there; with the list's view it is, and
    the page it leads to opens."""
    user = staff(operate)
    assert start not in home(user)

    user.user_permissions.add(Permission.objects.get(codename=view.split(".")[1]))
    user = get_user_model().objects.get(pk=user.pk)
    page = home(user)
    assert start in page
    href = re.search(rf'<a href="([^"]+)">{start}', page)
    assert href is not None
    client = Client()
    client.force_login(user)
    assert client.get(href.group(1)).status_code == 200


def test_the_flower_link_is_shown_only_to_those_flower_lets_in(settings: object) -> None:
    settings.FLOWER_URL = "https://flower.example.com/"  # type: ignore[attr-defined]

    jobs = "django_celery_results.view_taskresult"
    operator = home(staff(jobs, "rds.view_manageddatabase", "rds.operate_manageddatabase"))
    assert 'id="recent-jobs"' in operator
    assert 'id="place-flower"' not in operator, "Flower refuses them (403): no link to it"

    User.objects.filter(username="pat").delete()
    watcher = home(staff(jobs, "workers.view_operations"))
    assert 'href="https://flower.example.com/" id="place-flower"' in watcher


def test_each_apps_own_page_still_lists_that_app() -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    page = client.get("/admin/terraform/").content.decode()
    assert captions(page)[0] == "Terraform"
    assert "Terraform runs" in page  # the app page keeps Django's model names


def test_times_in_the_admin_name_their_zone() -> None:
    TaskResult.objects.create(task_id="t-2", task_name="workers.tasks.diagnostic_run_execute")
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    page = client.get("/admin/django_celery_results/taskresult/").content.decode()
    assert re.search(
        r'<td class="field-date_created[^"]*">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC</td>', page
    )


def test_audit_trails_cannot_be_deleted_from_the_admin_even_by_a_superuser() -> None:
    from workers.models import DeadLetterAction, FlowerAction

    root = get_user_model().objects.create_superuser("root")
    client = Client()
    client.force_login(root)
    records = [
        DeadLetterAction.objects.create(
            kind=DeadLetterAction.Kind.DISCARD, queue="default", message_id="m-1", username="pat"
        ),
        FlowerAction.objects.create(
            action="pool_grow", target="w@host", username="pat", status=200
        ),
    ]
    for record in records:
        info = (record._meta.app_label, record._meta.model_name)
        changelist = client.get(f"/admin/{info[0]}/{info[1]}/")
        assert changelist.status_code == 200
        assert "delete_selected" not in changelist.content.decode()
        page = f"/admin/{info[0]}/{info[1]}/{record.pk}/delete/"
        assert client.post(page, {"post": "yes"}).status_code == 403
        assert type(record)._default_manager.filter(pk=record.pk).exists()


def test_a_person_who_may_not_open_a_job_is_shown_no_link_or_live_box_that_would_refuse() -> None:
    """Looking at a record, an operations list or the operations page without the jobs'
    own view permissions: the job is named, never linked, and its log is not polled."""
    from courses.models import Course
    from tests.support.jobs import job_record

    cover_job = job_record(
        "cover-job", "media_pipeline.tasks.course_cover_variants_build", status="SUCCESS"
    )
    course = Course.objects.create(title="Course", slug="course", cover_task_id=cover_job.task_id)
    job_record("orphan", "workers.tasks.diagnostic_run_execute", status="STARTED")

    def page(url: str, *perms: str) -> str:
        client = Client()
        client.force_login(staff(*perms))
        response = client.get(url)
        assert response.status_code == 200
        get_user_model().objects.filter(username="pat").delete()
        return response.content.decode()

    course_page = f"/admin/courses/course/{course.pk}/change/"
    html = page(course_page, "courses.view_course")
    assert "job-live-hidden" in html and "/ops/jobs/" not in html
    html = page(course_page, "courses.view_course", "django_celery_results.view_taskresult")
    assert "/ops/jobs/cover-job/log/" in html

    assert "Operations page" not in page("/admin/workers/queuedepth/", "workers.view_queuedepth")

    operations = "/ops/operations/"
    html = page(operations, "workers.view_operations")
    assert "diagnostic_run_execute" in html and "/ops/jobs/orphan/" not in html
    html = page(
        operations,
        "workers.view_operations",
        "django_celery_results.view_taskresult",
        "workers.view_diagnosticrun",
    )
    assert "/ops/jobs/orphan/" in html
