"""The managed databases in the admin: registration with a schedule, and the four actions
(stop now, start now, refresh state, keep running until), each one a job per database."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from infra_tasks.rds.admin.forms import KeepRunningForm, ManagedDatabaseForm, schedule_zones
from infra_tasks.rds.models import ActionKind, DatabaseAction, Divergence, ManagedDatabase
from infra_tasks.rds.selectors import database_schedule_summary
from infra_tasks.rds.services.actions import database_action_request
from infra_tasks.rds.services.schedules import (
    database_keep_running,
    managed_database_delete,
    managed_database_save,
)
from workers.admin_base import HistoryKeepsRecordMixin
from workers.admin_links import admin_page_opens, job_link, refusal_report
from workers.enqueue import Requester
from workers.errors import ApplicationError


def _action_links(records: Iterable[DatabaseAction]) -> SafeString:
    """'demo-postgres (job and log)', linking the action record and its job, for messages;
    each a link only for whoever may open it (operating databases is no permission to
    look at their action records or jobs)."""
    actions_open = admin_page_opens(DatabaseAction)
    return format_html_join(
        ", ",
        "{} ({})",
        (
            (
                format_html(
                    '<a href="{}">{}</a>',
                    reverse("admin:rds_databaseaction_change", args=[record.pk]),
                    record.database.name,
                )
                if actions_open
                else record.database.name,
                job_link(record.task_id, "job and log"),
            )
            for record in records
        ),
    )


# What the system keeps about a database (read-only): its observed state and schedule rows.
STATE_FIELDS = (
    "status",
    "status_checked_at",
    "desired_state",
    "keep_running_until",
    "stop_task",
    "start_task",
    "history",
)


@admin.register(ManagedDatabase)
class ManagedDatabaseAdmin(HistoryKeepsRecordMixin, admin.ModelAdmin):
    history_name = "actions and divergences"
    form = ManagedDatabaseForm
    list_display = (
        "name",
        "kind",
        "identifier",
        "region",
        "status",
        "desired_state",
        "keep_running_until",
        "status_checked_at",
    )
    list_filter = ("kind", "desired_state", "enforce")
    search_fields = ("name", "identifier")
    readonly_fields = (*STATE_FIELDS, "schedule")
    fieldsets = (
        (None, {"fields": ("name", "kind", "identifier", "region", "enforce")}),
        ("Schedule", {"fields": ("time_zone", "stop_at", "stop_days", "start_at", "start_days")}),
        (
            "State",
            {"fields": STATE_FIELDS},
        ),
    )
    change_list_template = "admin/rds/manageddatabase/change_list.html"
    actions = ["stop_now", "start_now", "refresh_state", "keep_running_until"]

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only, Django would look the schedule's form fields up on the model, which has
        # none, and print "None" for each: say the schedule as beat has it instead.
        return tuple(
            (name, {**options, "fields": ("schedule",)}) if name == "Schedule" else (name, options)
            for name, options in fieldsets
        )

    @admin.display(description="schedule")
    def schedule(self, obj: ManagedDatabase) -> str:
        return database_schedule_summary(database=obj)

    @admin.display(description="history")
    def history(self, obj: ManagedDatabase) -> str:
        if not obj.pk:
            return "—"
        # Each list only for whoever may open it (a database operator may not see
        # divergences): a link to a refusal says nothing about the database.
        links = [
            format_html(
                '<a href="{}?database__id__exact={}">{}</a>',
                reverse(f"admin:rds_{model._meta.model_name}_changelist"),
                obj.pk,
                label,
            )
            for model, label in (
                (DatabaseAction, "actions and their jobs"),
                (Divergence, "divergences"),
            )
            if admin_page_opens(model, site=self.admin_site)
        ]
        return format_html_join(" · ", "{}", ((link,) for link in links)) if links else "—"

    def save_model(
        self, request: HttpRequest, obj: ManagedDatabase, form: Any, change: bool
    ) -> None:
        managed_database_save(database=obj, schedule=form.schedule())

    def delete_model(self, request: HttpRequest, obj: ManagedDatabase) -> None:
        managed_database_delete(database=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ManagedDatabase]) -> None:
        for database in queryset:
            managed_database_delete(database=database)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rds.operate_manageddatabase")

    # A managed database is the schedules that stop and start a real one (and, enforced, the
    # jobs that undo a divergence): registering, editing or removing it decides what those
    # jobs do, so it needs the operate permission besides Django's model permission, as a
    # schedule in the beat admin does (workers/schedules_admin.py). Without it the page is
    # read-only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and self.has_operate_permission(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and self.has_operate_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Its actions and divergences are an audit trail nobody may delete, and would go with
        # it: a Delete button would only lead to "Cannot delete managed database".
        if obj is not None and (obj.actions.exists() or obj.divergences.exists()):
            return False
        return super().has_delete_permission(request, obj) and self.has_operate_permission(request)

    def _request(
        self, request: HttpRequest, queryset: QuerySet[ManagedDatabase], action: str
    ) -> None:
        queued = []
        for database in queryset:
            try:
                queued.append(
                    database_action_request(
                        database=database, action=action, requester=Requester.for_user(request.user)
                    )
                )
            except ApplicationError as exc:  # a refusal, or the job queue unreachable
                refusal_report(self, request, exc)
                return
        self.message_user(
            request,
            format_html("{} queued for {}.", ActionKind(action).label, _action_links(queued)),
        )

    @admin.action(description="Stop now", permissions=["operate"])
    def stop_now(self, request: HttpRequest, queryset: QuerySet[ManagedDatabase]) -> None:
        self._request(request, queryset, ActionKind.STOP)

    @admin.action(description="Start now", permissions=["operate"])
    def start_now(self, request: HttpRequest, queryset: QuerySet[ManagedDatabase]) -> None:
        self._request(request, queryset, ActionKind.START)

    @admin.action(description="Refresh state from AWS", permissions=["operate"])
    def refresh_state(self, request: HttpRequest, queryset: QuerySet[ManagedDatabase]) -> None:
        self._request(request, queryset, ActionKind.REFRESH)

    @admin.action(description="Keep running until…", permissions=["operate"])
    def keep_running_until(
        self, request: HttpRequest, queryset: QuerySet[ManagedDatabase]
    ) -> HttpResponse | None:
        zones = schedule_zones(queryset)
        if len(zones) > 1:
            self.message_user(
                request,
                "These databases' schedules are in different time zones "
                f"({', '.join(sorted(zones))}): keep them running one zone at a time.",
                level=messages.ERROR,
            )
            return None
        zone = zones.pop() if zones else settings.TIME_ZONE
        form = KeepRunningForm(request.POST if "apply" in request.POST else None, zone=zone)
        if form.is_valid():
            until = form.cleaned_data["until"]
            records = []
            try:
                for database in queryset:
                    records.append(
                        database_keep_running(
                            database=database,
                            until=until,
                            requester=Requester.for_user(request.user),
                        )
                    )
            except ApplicationError as exc:  # a refusal, or the job queue unreachable
                form.add_error(None, str(exc))
                if records:  # those before the failure were queued: say so
                    self.message_user(
                        request,
                        format_html("Kept running already: {}.", _action_links(records)),
                        level=messages.WARNING,
                    )
            else:
                local = timezone.localtime(until, ZoneInfo(zone))
                self.message_user(
                    request,
                    format_html(
                        "Kept running until {} ({}); started if stopped: {}.",
                        f"{local:%Y-%m-%d %H:%M %Z}",
                        zone,
                        _action_links(records),
                    ),
                )
                return None
        return TemplateResponse(
            request,
            "admin/rds/manageddatabase/keep_running.html",
            {
                **self.admin_site.each_context(request),
                "title": "Keep running until",
                "form": form,
                "zone": zone,
                "databases": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )
