"""Every admin page, as the server sends it: no form inside a form, no duplicate id, a CSRF
token in every POST form. The browser tests check the pages their tours reach; this walks
every list, add and change page of every registered model, and the pages in between."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django_celery_results.models import TaskResult

from courses.models import Course
from infra_tasks.rds.models import DatabaseAction, ManagedDatabase
from infra_tasks.releases.models import Release
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from tests.infra_tasks.rds.support import register
from tests.support.html_checks import html_problems
from workers.models import DiagnosticRun, Job, RequesterKind

pytestmark = pytest.mark.django_db


@pytest.fixture
def records() -> None:
    """One record of each kind a person opens, with its job."""
    for task_id, name in (
        ("job-plan", "infra_tasks.terraform.tasks.terraform_plan"),
        ("job-action", "infra_tasks.rds.tasks.execute_database_action"),
        ("job-release", "infra_tasks.releases.tasks.release_migrate"),
        ("job-diagnostic", "workers.tasks.run_diagnostic"),
    ):
        Job.objects.create(
            task_id=task_id,
            task_name=name,
            queue="default",
            requester_kind=RequesterKind.CLI,
            requester_label="test",
        )
        TaskResult.objects.create(task_id=task_id, task_name=name, status="STARTED")
    workspace = TerraformWorkspace.objects.create(name="demo", directory="demo")
    TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.PLANNED,
        requester_kind="cli",
        requester_label="test",
        plan_task_id="job-plan",
        plan_summary={"add": 1, "change": 0, "destroy": 0},
        plan_changes={
            "resources": [{"address": "a.b", "action": "create", "reason": "", "attributes": []}],
            "outputs": [],
            "omitted": 0,
        },
    )
    database = register("pages-db")
    DatabaseAction.objects.create(
        database=database, action="stop", origin="cli: test", task_id="job-action"
    )
    Release.objects.create(
        version="v1",
        requester_kind=RequesterKind.CLI,
        requester_label="test",
        task_id="job-release",
    )
    DiagnosticRun.objects.create(task_id="job-diagnostic")
    Course.objects.create(title="Course", slug="course")


def admin_pages() -> list[str]:
    urls = ["/admin/", reverse("workers:operations"), reverse("dashboard:infrastructure")]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        urls.append(reverse("admin:{}_{}_add".format(*info)))
        obj = model._default_manager.order_by("pk").first()
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
            urls.append(reverse("admin:{}_{}_history".format(*info), args=[obj.pk]))
    workspace = TerraformWorkspace.objects.get()
    for name in ("admin:terraform_workspace_destroy", "admin:releases_release_run"):
        try:
            urls.append(reverse(name, args=[workspace.pk]))
        except NoReverseMatch:
            urls.append(reverse(name))
    return urls


def test_every_admin_page_is_sound_html(records: None) -> None:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    problems = []
    for url in admin_pages():
        response = client.get(url)
        if response.status_code == 403:
            continue  # read-only records have no add page
        assert response.status_code == 200, f"GET {url}: {response.status_code}"
        problems += [
            f"GET {url}: {problem}" for problem in html_problems(response.content.decode())
        ]
    # Pages that answer a POST with a form: an action's questions, a refused confirmation.
    workspace = TerraformWorkspace.objects.get()
    database = ManagedDatabase.objects.get()
    for url, data in (
        (
            reverse("admin:rds_manageddatabase_changelist"),
            {"action": "keep_running_until", "_selected_action": [database.pk], "apply": "1"},
        ),
        (reverse("admin:terraform_workspace_destroy", args=[workspace.pk]), {"confirm_name": "x"}),
    ):
        response = client.post(url, data)
        assert response.status_code == 200, f"POST {url}: {response.status_code}"
        problems += [
            f"POST {url}: {problem}" for problem in html_problems(response.content.decode())
        ]
    assert not problems, "\n".join(problems)
