"""Every admin page, as the server sends it: no form inside a form, no duplicate id, a CSRF
token in every POST form. The browser tests check the pages their tours reach; this walks
every list, add and change page of every registered model, and the pages in between."""

from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import NoReverseMatch, reverse

from infra_tasks.rds.models import ManagedDatabase
from infra_tasks.terraform.models import TerraformWorkspace
from tests.support.html_checks import html_problems
from tests.support.records import seed_records

pytestmark = pytest.mark.django_db


@pytest.fixture
def records() -> None:
    seed_records()


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
