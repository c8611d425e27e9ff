"""The infrastructure dashboard: staff with the permission only, and built from the database
alone — rendering it makes no AWS call."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from botocore.client import BaseClient
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from infra_tasks.dashboard.models import EcsServiceSnapshot
from infra_tasks.dashboard.services import ecs_services_refresh
from infra_tasks.rds.models import DesiredState, ManagedDatabase
from tests.infra_tasks.rds.support import register
from tests.support.servers import AwsEndpoint
from workers.devstack import free_port

URL = reverse("dashboard:infrastructure")


def client_for(*, staff: bool, permitted: bool, also: tuple[str, ...] = ()) -> Client:
    """`also`: further permissions, as "app_label.codename"."""
    user = get_user_model().objects.create_user(f"u{uuid.uuid4().hex[:6]}", is_staff=staff)
    if permitted:
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label="dashboard", codename="view_dashboard")
        )
    for perm in also:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
@pytest.mark.parametrize(("staff", "permitted"), [(False, True), (True, False)])
def test_dashboard_is_forbidden_without_staff_and_permission(staff: bool, permitted: bool) -> None:
    assert client_for(staff=staff, permitted=permitted).get(URL).status_code == 403


@pytest.mark.django_db
def test_dashboard_sends_a_visitor_not_logged_in_to_the_login_and_back() -> None:
    response = Client().get(URL)
    assert response.status_code == 302
    assert response["Location"] == f"{reverse('admin:login')}?next={URL}"


@pytest.mark.django_db
def test_dashboard_shows_databases_and_ecs_services_without_calling_aws(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.ECS_CLUSTER = "prod"
    stopped = register("billing")
    ManagedDatabase.objects.filter(pk=stopped.pk).update(
        status="stopped", desired_state=DesiredState.STOPPED, status_checked_at=timezone.now()
    )
    drifted = register("search")
    ManagedDatabase.objects.filter(pk=drifted.pk).update(
        status="available",
        desired_state=DesiredState.STOPPED,
        keep_running_until=None,
        status_checked_at=timezone.now(),
    )
    kept = register("analytics")
    kept_until = (timezone.now() + timedelta(days=3)).replace(microsecond=0)
    ManagedDatabase.objects.filter(pk=kept.pk).update(
        status="available", keep_running_until=kept_until
    )
    EcsServiceSnapshot.objects.create(
        cluster="prod",
        service_name="web",
        status="ACTIVE",
        desired_count=3,
        running_count=2,
        pending_count=1,
        refreshed_at=timezone.now(),
    )
    EcsServiceSnapshot.objects.create(
        cluster="staging",
        service_name="elsewhere",
        status="ACTIVE",
        desired_count=1,
        running_count=1,
        refreshed_at=timezone.now(),
    )
    # Any AWS call would go to a closed port, and is counted on the way.
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    calls: list[str] = []
    real_call = getattr(BaseClient, "_make_api_call")  # noqa: B009 - private, untyped

    def counting(self: BaseClient, operation: str, params: Any) -> Any:
        calls.append(operation)
        return real_call(self, operation, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", counting)

    response = client_for(staff=True, permitted=True).get(URL)

    assert response.status_code == 200
    assert calls == []
    rows = {row.database.name: row for row in response.context["databases"]}
    assert (rows["billing"].desired_state, rows["billing"].in_step) == ("stopped", True)
    assert (rows["search"].database.status, rows["search"].in_step) == ("available", False)
    assert rows["analytics"].desired_state == "running"
    assert rows["billing"].next_change is not None
    assert {row.next_change.action for row in rows.values() if row.next_change} <= {"stop", "start"}
    assert rows["analytics"].next_change is not None
    assert "(Europe/Warsaw)" in response.content.decode()
    html = response.content.decode()
    assert "billing" in html and "search" in html and "kept running until" in html
    # In the zone of its schedule, as typed into "Keep running until…" and as the next
    # scheduled change beside it (it was in UTC, beside a stop time in CET).
    local = timezone.localtime(kept_until, ZoneInfo("Europe/Warsaw"))
    assert f"kept running until {local:%Y-%m-%d %H:%M:%S %Z} (Europe/Warsaw)" in html
    assert [s.service_name for s in response.context["ecs"]["services"]] == ["web"]
    assert "<td>3</td><td>2</td><td>1</td>" in html
    assert "elsewhere" not in html


@pytest.mark.django_db
def test_ecs_refresh_reads_the_cluster_and_drops_deleted_services(aws: AwsEndpoint) -> None:
    ecs = aws.client("ecs")
    cluster = f"c-{uuid.uuid4().hex[:8]}"
    ecs.create_cluster(clusterName=cluster)
    definition = ecs.register_task_definition(
        family="app", containerDefinitions=[{"name": "app", "image": "app", "memory": 256}]
    )["taskDefinition"]["taskDefinitionArn"]
    for name, count in (("api", 2), ("jobs", 1)):
        ecs.create_service(
            cluster=cluster, serviceName=name, taskDefinition=definition, desiredCount=count
        )

    assert ecs_services_refresh(cluster=cluster) == {"cluster": cluster, "services": 2}
    assert {
        (s.service_name, s.desired_count, s.status)
        for s in EcsServiceSnapshot.objects.filter(cluster=cluster)
    } == {("api", 2, "ACTIVE"), ("jobs", 1, "ACTIVE")}

    ecs.delete_service(cluster=cluster, service="jobs", force=True)
    ecs_services_refresh(cluster=cluster)

    assert list(
        EcsServiceSnapshot.objects.filter(cluster=cluster).values_list("service_name", flat=True)
    ) == ["api"]


@pytest.mark.django_db
def test_ecs_refresh_without_a_configured_cluster_does_nothing(settings: Any) -> None:
    settings.ECS_CLUSTER = ""
    assert ecs_services_refresh() == {"cluster": None, "services": 0}


@pytest.mark.django_db
def test_dashboard_lists_the_latest_terraform_runs_newest_first() -> None:
    from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace

    workspace = TerraformWorkspace.objects.create(name="network", directory="network")
    TerraformWorkspace.objects.filter(pk=workspace.pk).update(drifted=True)
    older = TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.APPLIED,
        requester_kind="user",
        requester_label="alice",
    )
    newer = TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.DESTROY,
        state=RunState.FAILED,
        requester_kind="schedule",
        requester_label="nightly",
    )

    response = client_for(staff=True, permitted=True).get(URL)

    assert [run.pk for run in response.context["terraform_runs"]] == [newer.pk, older.pk]
    html = response.content.decode()
    assert "network <strong>(drifted)</strong>" in html
    run_page = reverse("admin:terraform_terraformrun_change", args=[newer.pk])
    assert f"#{newer.pk}" in html
    assert run_page not in html, "no link to a page this person may not open"
    runs_viewer = client_for(staff=True, permitted=True, also=("terraform.view_terraformrun",))
    assert run_page in runs_viewer.get(URL).content.decode()
