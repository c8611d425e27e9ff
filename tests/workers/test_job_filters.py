"""The job list's filters: each narrows the list to the jobs it names, and they combine."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from tests.workers.jobs import job_row
from workers.models import Job, RequesterKind

pytestmark = pytest.mark.django_db

URL = "/admin/django_celery_results/taskresult/"


@pytest.fixture
def jobs() -> dict[str, str]:
    rows = {
        "diag-failed": job_row("workers.tasks.diagnostic_run_execute", "FAILURE"),
        "cover-ok": job_row(
            "media_pipeline.tasks.course_cover_variants_build", "SUCCESS", queue="media"
        ),
        "apply-old": job_row(
            "infra_tasks.terraform.tasks.run_apply_execute",
            "FAILURE",
            queue="infra",
            created_ago=timedelta(days=10),
            requester="alice",
        ),
        "depths": job_row("workers.tasks.queue_depths_record", "SUCCESS"),
    }
    Job.objects.filter(task_id=rows["depths"].task_id).update(
        requester_kind=RequesterKind.SCHEDULE, requester_label="Record SQS queue depths"
    )
    get_user_model().objects.create_user("alice", is_staff=True)
    return {name: row.task_id for name, row in rows.items()}


def listed(client: Client, query: str, jobs: dict[str, str]) -> set[str]:
    response = client.get(f"{URL}?{query}")
    assert response.status_code == 200, response.status_code
    ids = set(re.findall(r"[0-9a-f]{8}-[0-9a-f-]{27}", response.content.decode()))
    return {name for name, task_id in jobs.items() if task_id in ids}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", {"diag-failed", "cover-ok", "apply-old", "depths"}),
        ("family=diagnostic", {"diag-failed"}),
        ("family=system", {"depths"}),
        ("family=terraform", {"apply-old"}),
        ("task=media_pipeline.tasks.course_cover_variants_build", {"cover-ok"}),
        ("queue=media", {"cover-ok"}),
        ("queue=infra", {"apply-old"}),
        ("status__exact=FAILURE", {"diag-failed", "apply-old"}),
        ("requester=user:alice", {"apply-old"}),
        ("requester=kind:schedule", {"depths"}),
        ("created=24h", {"diag-failed", "cover-ok", "depths"}),
        ("created=older-7d", {"apply-old"}),
        ("followup=open", {"diag-failed", "apply-old"}),
        ("status__exact=FAILURE&created=24h&queue=default", {"diag-failed"}),
    ],
)
def test_each_filter_lists_only_the_jobs_it_names(
    admin_client: Client, jobs: dict[str, str], query: str, expected: set[str]
) -> None:
    assert listed(admin_client, query, jobs) == expected


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        # The name the Jobs home and the task filter show, and the start of it.
        ("diagnostic_run_execute", {"diag-failed"}),
        ("course_cover", {"cover-ok"}),
        # The stored dotted name and a job's id still find it.
        ("workers.tasks.queue_depths", {"depths"}),
        ("nothing_like_it", set()),
    ],
)
def test_the_search_box_finds_jobs_by_the_task_name_the_admin_shows(
    admin_client: Client, jobs: dict[str, str], term: str, expected: set[str]
) -> None:
    assert listed(admin_client, f"q={term}", jobs) == expected


def test_the_family_and_task_choices_are_only_those_whose_jobs_the_person_may_see(
    jobs: dict[str, str],
) -> None:
    from django.contrib.auth.models import Permission

    operator = get_user_model().objects.create_user("dbop", is_staff=True)
    operator.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_taskresult", "view_databaseaction"],
        )
    )
    client = Client()
    client.force_login(operator)
    page = client.get(URL).content.decode()
    families = re.findall(r'href="\?family=(\w+)"', page)
    assert families == ["databases"]
    tasks = set(re.findall(r'href="\?task=([\w.]+)"', page))
    assert tasks and all(name.startswith("infra_tasks.rds.") for name in tasks), tasks

    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "x")
    client.force_login(superuser)
    page = client.get(URL).content.decode()
    assert set(re.findall(r'href="\?family=(\w+)"', page)) == {
        "diagnostic",
        "courses",
        "terraform",
        "databases",
        "releases",
        "infrastructure",
        "system",
        "other",
    }


def test_the_requested_by_choices_name_only_staff_who_asked_for_a_job(
    admin_client: Client, jobs: dict[str, str]
) -> None:
    # It listed every staff member, so most names led to an empty list.
    get_user_model().objects.create_user("bob", is_staff=True)  # never asked for a job

    page = admin_client.get(URL).content.decode()
    people = re.findall(r'href="\?requester=user%3A(\w+)"', page)

    assert people == ["alice"]
    assert re.findall(r'href="\?requester=kind%3A(\w+)"', page) == [
        "user",
        "cli",
        "schedule",
        "system",
    ]


def test_the_requested_by_choices_name_only_who_asked_for_a_job_the_person_may_see(
    jobs: dict[str, str],
) -> None:
    """Alice started only a terraform job. A database operator, who may see the database
    jobs alone, is not told that she did (nor offered her name, which would list nothing),
    as the family and task choices leave out what they may not see."""
    from django.contrib.auth.models import Permission

    operator = get_user_model().objects.create_user("dbop", is_staff=True)
    operator.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_taskresult", "view_databaseaction"])
    )
    Job.objects.create(
        task_id="dbop-stop",
        task_name="infra_tasks.rds.tasks.database_action_execute",
        requester_kind=RequesterKind.USER,
        requester_label="dbop",
    )
    client = Client()
    client.force_login(operator)

    page = client.get(URL).content.decode()

    assert re.findall(r'href="\?requester=user%3A(\w+)"', page) == ["dbop"]
