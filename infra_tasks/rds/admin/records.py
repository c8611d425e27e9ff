"""The action records and divergences: read-only, each linking the job that did the work."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.utils.safestring import SafeString

from infra_tasks.rds.models import DatabaseAction, Divergence
from workers.admin_base import ImmutableAdminMixin
from workers.admin_links import job_link
from workers.admin_live import LiveJobFieldsMixin
from workers.display import duration_text

# What was asked of which database, by whom, and how it went: in the list and on the page.
OUTCOME = (
    "database",
    "action",
    "requester",
    "state",
    "status_before",
    "status_after",
    "wait",
)


@admin.register(DatabaseAction)
class DatabaseActionAdmin(LiveJobFieldsMixin, ImmutableAdminMixin, admin.ModelAdmin):
    list_display = ("created_at", *OUTCOME, "job")
    list_filter = ("state", "action", "database")
    list_select_related = ("database",)
    search_fields = ("database__name", "=task_id")
    change_form_template = "admin/rds/databaseaction/change_form.html"
    fieldsets = (
        (None, {"fields": (*OUTCOME, "message", "job")}),
        ("When", {"fields": ("created_at", "finished_at", "attempts")}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)
    # The job's live summary at the top of the page shows these while its record exists.
    live_fields = ("state", "status_before", "status_after", "wait", "message")

    @admin.display(description="AWS took", ordering="wait_seconds")
    def wait(self, obj: DatabaseAction) -> str:
        return duration_text(obj.wait_seconds)

    @admin.display(description="job")
    def job(self, obj: DatabaseAction) -> SafeString | str:
        return job_link(obj.task_id)


@admin.register(Divergence)
class DivergenceAdmin(ImmutableAdminMixin, admin.ModelAdmin):
    list_display = (
        "detected_at",
        "database",
        "desired_state",
        "observed_status",
        "checks",
        "notified_at",
        "resolved_at",
        "corrective_job",
    )
    list_filter = ("desired_state", "database")
    list_select_related = ("database",)

    @admin.display(description="corrective job")
    def corrective_job(self, obj: Divergence) -> SafeString | str:
        return job_link(obj.corrective_task_id)
