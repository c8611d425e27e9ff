"""Admin for managed databases: registration with its schedule, and the four actions.

Saving goes through `managed_database_save`, which keeps the beat schedules in step. Every
action is a job (`database_action_request`); the action records and divergences are
read-only and link to their job's page and log.
"""

from __future__ import annotations

from datetime import time
from typing import Any
from zoneinfo import available_timezones

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html

from infra_tasks.rds import services
from infra_tasks.rds.models import ActionKind, DatabaseAction, Divergence, ManagedDatabase
from infra_tasks.rds.schedule_times import CronSpec
from infra_tasks.rds.selectors import database_cron_spec
from workers.admin_base import ReadOnlyAdminMixin
from workers.enqueue import BrokerUnavailable, Requester

TIME_ZONES = sorted(available_timezones())


class ManagedDatabaseForm(forms.ModelForm):
    """The model's fields plus its schedule, which is stored in django-celery-beat."""

    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES], initial="UTC")
    stop_at = forms.TimeField(
        required=False, initial=time(22, 0), help_text="Nightly stop, local time; empty: none."
    )
    stop_days = forms.CharField(initial="*", help_text='Cron days of week: "*", "1-5", "mon-fri".')
    start_at = forms.TimeField(
        required=False, initial=time(7, 0), help_text="Morning start, local time; empty: none."
    )
    start_days = forms.CharField(initial="1-5", help_text="Cron days of week.")

    class Meta:
        model = ManagedDatabase
        fields = ["name", "kind", "identifier", "region", "enforce"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Show the schedule as beat has it: it may have been edited in the beat admin.
            for action, at, days in (
                (ActionKind.STOP, "stop_at", "stop_days"),
                (ActionKind.START, "start_at", "start_days"),
            ):
                spec = database_cron_spec(database=self.instance, action=action)
                self.initial[at] = _time_of(spec)
                if spec is not None:
                    self.initial[days] = spec.day_of_week
                    self.initial["time_zone"] = spec.time_zone

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        try:
            self.schedule().spec(ActionKind.STOP)
            self.schedule().spec(ActionKind.START)
        except (ValueError, KeyError) as exc:
            raise forms.ValidationError(f"Not a valid schedule: {exc}") from exc
        return data

    def schedule(self) -> services.DatabaseSchedule:
        data = self.cleaned_data
        return services.DatabaseSchedule(
            time_zone=data.get("time_zone") or "UTC",
            stop_at=data.get("stop_at"),
            stop_days=data.get("stop_days") or "*",
            start_at=data.get("start_at"),
            start_days=data.get("start_days") or "*",
        )


def _time_of(spec: CronSpec | None) -> time | None:
    if spec is None or not (spec.hour.isdigit() and spec.minute.isdigit()):
        return None
    return time(int(spec.hour), int(spec.minute))


class KeepRunningForm(forms.Form):
    until = forms.DateTimeField(
        help_text="In the site's time zone (TIME_ZONE).",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )


@admin.register(ManagedDatabase)
class ManagedDatabaseAdmin(admin.ModelAdmin):
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
    readonly_fields = (
        "status",
        "status_checked_at",
        "desired_state",
        "keep_running_until",
        "stop_task",
        "start_task",
        "history",
    )
    fieldsets = (
        (None, {"fields": ("name", "kind", "identifier", "region", "enforce")}),
        ("Schedule", {"fields": ("time_zone", "stop_at", "stop_days", "start_at", "start_days")}),
        (
            "State",
            {
                "fields": (
                    "status",
                    "status_checked_at",
                    "desired_state",
                    "keep_running_until",
                    "stop_task",
                    "start_task",
                    "history",
                )
            },
        ),
    )
    change_list_template = "admin/rds/manageddatabase/change_list.html"
    actions = ["stop_now", "start_now", "refresh_state", "keep_running_until"]

    @admin.display(description="history")
    def history(self, obj: ManagedDatabase) -> str:
        if not obj.pk:
            return "—"
        actions = reverse("admin:rds_databaseaction_changelist")
        divergences = reverse("admin:rds_divergence_changelist")
        return format_html(
            '<a href="{}?database__id__exact={}">actions and their jobs</a> · '
            '<a href="{}?database__id__exact={}">divergences</a>',
            actions,
            obj.pk,
            divergences,
            obj.pk,
        )

    def save_model(
        self, request: HttpRequest, obj: ManagedDatabase, form: Any, change: bool
    ) -> None:
        services.managed_database_save(database=obj, schedule=form.schedule())

    def delete_model(self, request: HttpRequest, obj: ManagedDatabase) -> None:
        services.managed_database_delete(database=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ManagedDatabase]) -> None:
        for database in queryset:
            services.managed_database_delete(database=database)

    def has_operate_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("rds.operate_manageddatabase")

    def _request(
        self, request: HttpRequest, queryset: QuerySet[ManagedDatabase], action: str
    ) -> None:
        queued = []
        for database in queryset:
            try:
                services.database_action_request(
                    database=database, action=action, requester=Requester.for_user(request.user)
                )
            except BrokerUnavailable as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return
            queued.append(database.name)
        self.message_user(request, f"{ActionKind(action).label} queued for {', '.join(queued)}.")

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
        form = KeepRunningForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            until = form.cleaned_data["until"]
            try:
                for database in queryset:
                    services.database_keep_running(
                        database=database, until=until, requester=Requester.for_user(request.user)
                    )
            except BrokerUnavailable as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return None
            except ValueError as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
                return None
            self.message_user(
                request,
                f"Kept running until {until:%Y-%m-%d %H:%M}: "
                f"{', '.join(d.name for d in queryset)} (started if stopped).",
            )
            return None
        return TemplateResponse(
            request,
            "admin/rds/manageddatabase/keep_running.html",
            {
                **self.admin_site.each_context(request),
                "title": "Keep running until",
                "form": form,
                "databases": queryset,
                "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
                "opts": self.model._meta,
            },
        )


def _job_link(task_id: str) -> str:
    if not task_id:
        return "—"
    return format_html(
        '<a href="{}">{}</a>', reverse("workers:job-detail", args=[task_id]), task_id
    )


@admin.register(DatabaseAction)
class DatabaseActionAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "database",
        "action",
        "origin",
        "state",
        "status_before",
        "status_after",
        "wait_seconds",
        "job",
    )
    list_filter = ("state", "action", "database")
    list_select_related = ("database",)
    search_fields = ("database__name", "=task_id")

    @admin.display(description="job")
    def job(self, obj: DatabaseAction) -> str:
        return _job_link(obj.task_id)


@admin.register(Divergence)
class DivergenceAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
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
    def corrective_job(self, obj: Divergence) -> str:
        return _job_link(obj.corrective_task_id)
