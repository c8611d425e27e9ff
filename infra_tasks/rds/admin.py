"""Admin for managed databases: registration with its schedule, and the four actions.

Saving goes through `managed_database_save`, which keeps the beat schedules in step. Every
action is a job (`database_action_request`); the action records and divergences are
read-only and link to their job's page and log.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import flatten_fieldsets
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from infra_tasks.rds import services
from infra_tasks.rds.models import ActionKind, DatabaseAction, Divergence, ManagedDatabase
from infra_tasks.rds.schedule_times import CronSpec
from infra_tasks.rds.selectors import database_cron_spec
from workers.admin_base import ReadOnlyAdminMixin
from workers.admin_live import LiveJobFieldsMixin
from workers.display import duration_text
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
    """The time to keep running until: local to the zone of the databases' schedule."""

    until = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def __init__(self, *args: Any, zone: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone
        self.fields["until"].help_text = f"Local time in {zone}, the zone of the schedule."

    def full_clean(self) -> None:
        # The typed time is read in the schedule's zone, not the site's.
        with timezone.override(ZoneInfo(self.zone)):
            super().full_clean()

    def clean_until(self) -> datetime:
        until: datetime = self.cleaned_data["until"]
        if until <= timezone.now():
            raise forms.ValidationError(
                f"{timezone.localtime(until):%Y-%m-%d %H:%M} {self.zone} has passed: "
                "give a time to come."
            )
        return until


def schedule_zones(databases: Iterable[ManagedDatabase]) -> set[str]:
    """The time zones the databases' schedules are in (the site's for one without)."""
    zones = set()
    for database in databases:
        spec = database_cron_spec(database=database, action=ActionKind.STOP) or database_cron_spec(
            database=database, action=ActionKind.START
        )
        zones.add(spec.time_zone if spec else settings.TIME_ZONE)
    return zones


def _action_links(records: Iterable[DatabaseAction]) -> SafeString:
    """'demo-postgres (job and log)', linking the action record and its job, for messages."""
    return format_html_join(
        ", ",
        '<a href="{}">{}</a> (<a href="{}">job and log</a>)',
        (
            (
                reverse("admin:rds_databaseaction_change", args=[record.pk]),
                record.database.name,
                reverse("workers:job-detail", args=[record.task_id]),
            )
            for record in records
        ),
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
                queued.append(
                    services.database_action_request(
                        database=database, action=action, requester=Requester.for_user(request.user)
                    )
                )
            except BrokerUnavailable as exc:
                self.message_user(request, str(exc), level=messages.ERROR)
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
                        services.database_keep_running(
                            database=database,
                            until=until,
                            requester=Requester.for_user(request.user),
                        )
                    )
            except (BrokerUnavailable, ValueError) as exc:
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


def _job_link(task_id: str) -> str:
    if not task_id:
        return "—"
    return format_html(
        '<a href="{}">{}</a>', reverse("workers:job-detail", args=[task_id]), task_id
    )


@admin.register(DatabaseAction)
class DatabaseActionAdmin(LiveJobFieldsMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = (
        "created_at",
        "database",
        "action",
        "requester",
        "state",
        "status_before",
        "status_after",
        "wait",
        "job",
    )
    list_filter = ("state", "action", "database")
    list_select_related = ("database",)
    search_fields = ("database__name", "=task_id")
    change_form_template = "admin/rds/databaseaction/change_form.html"
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "database",
                    "action",
                    "requester",
                    "state",
                    "status_before",
                    "status_after",
                    "wait",
                    "message",
                    "job",
                )
            },
        ),
        ("When", {"fields": ("created_at", "finished_at", "attempts")}),
    )
    readonly_fields = flatten_fieldsets(fieldsets)
    # The job's live summary at the top of the page shows these while its record exists.
    live_fields = ("state", "status_before", "status_after", "wait", "message")

    @admin.display(description="AWS took", ordering="wait_seconds")
    def wait(self, obj: DatabaseAction) -> str:
        return duration_text(obj.wait_seconds)

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
