from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from infra_tasks.dashboard.models import EcsServiceSnapshot


@admin.register(EcsServiceSnapshot)
class EcsServiceSnapshotAdmin(admin.ModelAdmin):
    """Read-only: rows are written by the refresh job only."""

    list_display = (
        "service_name",
        "cluster",
        "status",
        "desired_count",
        "running_count",
        "pending_count",
        "refreshed_at",
    )
    list_filter = ("cluster",)
    change_list_template = "admin/dashboard/ecsservicesnapshot/change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
