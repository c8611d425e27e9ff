"""Read-only admin lists of the operations records, each linking to the operations page."""

from __future__ import annotations

from django.contrib import admin

from workers.admin_base import ImmutableAdminMixin, ReadOnlyAdminMixin
from workers.models import DeadLetterAction, FlowerAction, QueueDepth, WorkerHeartbeat


class RecordAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Rows written by workers and the periodic task: read-only here."""

    change_list_template = "admin/workers/operations_record_change_list.html"


class AuditRecordAdmin(ImmutableAdminMixin, RecordAdmin):
    """Who did what, and when: an audit trail is not deleted from the admin either."""


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
        "queue_names",
        "concurrency",
        "active",
        "processed",
        "monitored",
        "started_at",
        "last_seen_at",
    )
    list_filter = ("monitored",)
    search_fields = ("^hostname",)

    @admin.display(description="queues")
    def queue_names(self, heartbeat: WorkerHeartbeat) -> str:
        # `queues` is a JSON list: shown as it is stored it read ["default", "media"], brackets
        # and quotes; the operations page names them the same way as here.
        return ", ".join(heartbeat.queues or ()) or "-"


@admin.register(DeadLetterAction)
class DeadLetterActionAdmin(AuditRecordAdmin):
    """The audit of redrives and discards made on the operations page."""

    list_display = ("at", "kind", "queue", "task_name", "task_id", "username", "message_id")
    list_filter = ("kind", "queue")
    search_fields = ("=task_id", "=message_id", "username")


@admin.register(FlowerAction)
class FlowerActionAdmin(AuditRecordAdmin):
    """The audit of Flower's remote control: who shut down, resized, revoked, and when."""

    list_display = ("at", "action", "target", "arguments", "username", "status", "remote_addr")
    list_filter = ("action", "status")
    search_fields = ("=target", "username")
