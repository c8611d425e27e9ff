from __future__ import annotations

from django.contrib import admin

from infra_tasks.dashboard.models import EcsServiceSnapshot
from workers.admin_base import ImmutableAdminMixin


@admin.register(EcsServiceSnapshot)
class EcsServiceSnapshotAdmin(ImmutableAdminMixin, admin.ModelAdmin):
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
