"""The infrastructure dashboard: one admin page, rendered from the database alone.

Each section is a template include plus one context entry, so a section for another app's
data (e.g. the latest terraform runs) is added in two lines.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from infra_tasks.dashboard import selectors
from infra_tasks.terraform.selectors import terraform_run_list_latest
from workers.permissions import page_login_required, staff_permission_required


@require_GET
@page_login_required
@staff_permission_required("dashboard.view_dashboard")
def infrastructure_dashboard(request: HttpRequest) -> HttpResponse:
    now = timezone.now()
    context = {
        **admin.site.each_context(request),
        "title": "Infrastructure",
        "now": now,
        "databases": selectors.dashboard_databases(now=now),
        "ecs": {"cluster": settings.ECS_CLUSTER, "services": selectors.dashboard_ecs_services()},
        "terraform_runs": terraform_run_list_latest(limit=10),
    }
    return render(request, "dashboard/infrastructure.html", context)
