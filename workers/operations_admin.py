"""Read-only admin lists of the operations records, each linking to the operations page."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from workers.models import QueueDepth, WorkerHeartbeat


class RecordAdmin(admin.ModelAdmin):
    """Rows written by workers and the periodic task: read-only here."""

    change_list_template = "admin/workers/operations_record_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(QueueDepth)
class QueueDepthAdmin(RecordAdmin):
    list_display = (
        "queue",
        "visible",
        "in_flight",
        "delayed",
        "dead_letters",
        "sampled_at",
        "error",
    )


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(RecordAdmin):
    list_display = (
        "hostname",
        "queues",
        "concurrency",
        "active",
        "processed",
        "monitored",
        "started_at",
        "last_seen_at",
    )
    list_filter = ("monitored",)
    search_fields = ("^hostname",)
