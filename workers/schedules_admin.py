"""django-celery-beat's schedules in the admin, under the project's one rule.

The library's PeriodicTask admin offers run, enable, disable and toggle to anyone who may
see the list (its actions name no permission), and "run" sends the task straight to the
broker: no Job row, no requester, no LogEntry. A schedule is a way of starting its task, so
here whatever changes when a task runs needs the operate permission of the task's family
(workers/families.py) besides the model permission Django asks for:

- run, enable, disable and toggle need `change_periodictask` and may start every selected
  task; run goes through `job_enqueue` like any other job, the switches are audited;
- editing or deleting a periodic task, or saving one for a task, needs that task's;
- editing or deleting a crontab, interval, solar or clocked schedule re-times or (by
  cascade) removes every periodic task that uses it, so it needs each of theirs.

Where it is missing the page is read-only, as for a user with view permission only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join
from django_celery_beat.admin import (
    ClockedScheduleAdmin,
    CrontabScheduleAdmin,
    IntervalScheduleAdmin,
    PeriodicTaskAdmin,
    SolarScheduleAdmin,
    TaskChoiceField,
    TaskSelectWidget,
)
from django_celery_beat.models import (
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from workers import families
from workers.admin_links import started_job_link
from workers.cron_fields import DAY_OF_WEEK_HELP, cron_field_check
from workers.display import counted
from workers.enqueue import (
    RESERVED_HEADERS,
    BrokerUnavailable,
    JobArgumentsRefused,
    JobQueueRefused,
    Requester,
    job_arguments_check,
    job_destination_problem,
)
from workers.job_filters import registered_task
from workers.job_registry import canonical_name
from workers.services import ScheduleRunRefused, periodic_tasks_run_now


def headers_problem(headers: Any) -> str:
    """Why a schedule's headers (a JSON text) cannot be sent, or "" if they can. The library
    checks nothing here: saved as they were, `[1]` or `null` stopped beat itself, and every
    schedule with it, once it read them (a TypeError in its entry); text that is not JSON
    left the schedule silently never firing."""
    if headers in (None, ""):
        return ""
    try:
        parsed = json.loads(headers) if isinstance(headers, str) else headers
    except ValueError as exc:
        return f"Unable to parse JSON: {exc}"
    if not isinstance(parsed, dict):
        return 'Headers are a JSON object, e.g. {"x-team": "ops"}.'
    reserved = sorted(set(map(str, parsed)) & RESERVED_HEADERS)
    if reserved:
        # Celery lets a header named "task" choose which task a worker runs.
        return "These headers are the job's own and cannot be set here: " + ", ".join(reserved)
    return ""


def arguments_problem(task_name: str, args: str | None, kwargs: str | None) -> str:
    """Why the task cannot run with a schedule's arguments (JSON texts), or "" if it can (or
    is unknown here): saved as they are, each firing would fail before reaching SQS."""
    task = registered_task(task_name)
    if task is None:
        return ""
    try:
        parsed_args, parsed_kwargs = json.loads(args or "[]"), json.loads(kwargs or "{}")
    except ValueError:
        return ""  # the library's own validation says what is wrong with it
    if not isinstance(parsed_args, list) or not isinstance(parsed_kwargs, dict):
        return 'Positional arguments are a JSON list ([1]), keyword arguments an object ({"a": 1}).'
    try:
        job_arguments_check(task, parsed_args, parsed_kwargs)
    except JobArgumentsRefused as exc:
        return str(exc)
    return ""


class CurrentTaskSelectWidget(TaskSelectWidget):
    """The library's task picker without the tasks' former names: those stay registered
    so that messages and schedules under an old name still run, but offered here they
    read as a second task doing the same (`run_diagnostic` beside
    `diagnostic_run_execute`)."""

    def tasks_as_choices(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (name, label)
            for name, label in super().tasks_as_choices()
            if not name or canonical_name(name) == name
        )


def may_start_some_family(user: Any) -> bool:
    return bool(user.is_superuser) or any(
        f.operate_permission and user.has_perm(f.operate_permission) for f in families.FAMILIES
    )


def not_startable(user: Any, schedules: Iterable[PeriodicTask]) -> list[str]:
    """The names of the periodic tasks among `schedules` whose jobs `user` may not start."""
    return [s.name for s in schedules if not families.job_startable(user, s.task)]


class StartGuardedAdminMixin:
    """Changing or deleting a row changes when the periodic tasks it stands for run (a
    periodic task itself; a crontab, interval, solar or clocked schedule shared by several,
    which a deletion removes by CASCADE): both need the operate permission of every one of
    those tasks. Without it the page is read-only, and a deletion is refused naming them,
    on the delete page and for "delete selected" alike."""

    def periodic_tasks(self, objs: Any) -> Iterable[PeriodicTask]:
        """The periodic tasks whose runs `objs` (rows of this admin) decide."""
        raise NotImplementedError

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and (  # type: ignore[misc]
            obj is None or not not_startable(request.user, self.periodic_tasks([obj]))
        )

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_delete_permission(request, obj) and (  # type: ignore[misc]
            obj is None or not not_startable(request.user, self.periodic_tasks([obj]))
        )

    def get_deleted_objects(self, objs: Any, request: HttpRequest) -> Any:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(  # type: ignore[misc]
            objs, request
        )
        refused = not_startable(request.user, self.periodic_tasks(objs))
        if refused:
            perms_needed = {*perms_needed, *(f"periodic task “{name}”" for name in refused)}
        return deleted, counts, perms_needed, protected


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class GuardedPeriodicTaskAdmin(StartGuardedAdminMixin, PeriodicTaskAdmin):
    actions = ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")
    change_form_template = "admin/django_celery_beat/periodictask/change_form.html"

    def periodic_tasks(self, objs: Any) -> Iterable[PeriodicTask]:
        return objs

    def has_switch_permission(self, request: HttpRequest) -> bool:
        """May change schedules and start some family's jobs: without the latter every
        switch and Run would be refused, so none is offered. (Django offers an action on
        any one of its permissions, hence one that says both.)"""
        return self.has_change_permission(request) and may_start_some_family(request.user)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not may_start_some_family(request.user):
            actions.pop("delete_selected", None)  # it would refuse every schedule
        return actions

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None or self.has_change_permission(request, obj):
            return fieldsets
        # Read-only, the library's task picker ("regtask") is no field of the model: Django
        # would show "Regtask: None" above the task's name. (Its read-only schedule is a link
        # only for who may open that schedule's page: workers.admin_links, for every admin.)
        return tuple(
            (name, {**options, "fields": tuple(f for f in options["fields"] if f != "regtask")})
            for name, options in fieldsets
        )

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form: Any = super().get_form(request, obj, **kwargs)
        user = request.user

        class StartableTaskForm(form):
            regtask = TaskChoiceField(
                label="Task (registered)", required=False, widget=CurrentTaskSelectWidget
            )

            def clean(self) -> dict[str, Any]:
                cleaned: dict[str, Any] = super().clean()
                problem = headers_problem(cleaned.get("headers"))
                if problem and "headers" in cleaned:
                    self.add_error("headers", problem)
                task = cleaned.get("task")
                destination = job_destination_problem(
                    cleaned.get("queue"),
                    task or "",
                    cleaned.get("exchange"),
                    cleaned.get("routing_key"),
                )
                if destination and destination[0] in cleaned:
                    self.add_error(*destination)
                if task and "args" in cleaned and "kwargs" in cleaned:
                    problem = arguments_problem(task, cleaned["args"], cleaned["kwargs"])
                    if problem:
                        self.add_error("args", problem)
                if task and not families.job_startable(user, task):
                    raise forms.ValidationError(
                        "You may not start %(task)s jobs, so you may not schedule them.",
                        params={"task": task},
                        code="not_startable",
                    )
                return cleaned

        return StartableTaskForm

    # The library's switches, each behind the change permission and the operate permission
    # of every selected task, and written to the admin history.
    @admin.action(description="Enable selected tasks", permissions=["switch"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self.switch(request, queryset, super().enable_tasks)

    @admin.action(description="Disable selected tasks", permissions=["switch"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self.switch(request, queryset, super().disable_tasks)

    @admin.action(description="Toggle activity of selected tasks", permissions=["switch"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        self.switch(request, queryset, super().toggle_tasks)

    def switch(
        self,
        request: HttpRequest,
        queryset: QuerySet[PeriodicTask],
        flip: Callable[[HttpRequest, QuerySet[PeriodicTask]], None],
    ) -> None:
        """Enable, disable or toggle (the library's `flip`) all the selected schedules, or
        none of them."""
        schedules = list(queryset)
        if self.refused(request, schedules, "Nothing was changed"):
            return
        flip(request, queryset)
        for schedule in PeriodicTask.objects.filter(pk__in=[s.pk for s in schedules]):
            self.log_change(
                request,
                schedule,
                f"{'Enabled' if schedule.enabled else 'Disabled'} from the schedules list.",
            )

    def refused(self, request: HttpRequest, schedules: list[PeriodicTask], outcome: str) -> bool:
        """Say so, and True, if the user may not start the jobs of some of `schedules`."""
        refused = not_startable(request.user, schedules)
        if refused:
            self.message_user(
                request,
                f"{outcome}: you may not start the jobs of " + ", ".join(refused) + ".",
                level=messages.ERROR,
            )
        return bool(refused)

    @admin.action(description="Run selected tasks now (as jobs)", permissions=["switch"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        schedules = list(queryset)
        if self.refused(request, schedules, "Nothing was run"):
            return
        try:
            task_ids = periodic_tasks_run_now(
                periodic_tasks=schedules, requester=Requester.for_user(request.user)
            )
        except (ScheduleRunRefused, JobArgumentsRefused, JobQueueRefused, BrokerUnavailable) as exc:
            self.message_user(request, f"Nothing was run: {exc}", level=messages.ERROR)
            return
        links = format_html_join(
            ", ",
            "{}",
            ((started_job_link(request.user, task_id, f"job {task_id}"),) for task_id in task_ids),
        )
        queued = counted(len(task_ids), "job")
        self.message_user(request, format_html("Queued {}: {}.", queued, links))


class CrontabForm(forms.ModelForm):
    """Beat's crontab, whose refusals say what each field takes and which refuses what
    Celery could not run (workers/cron_fields.py)."""

    class Meta:
        model = CrontabSchedule
        fields = ["minute", "hour", "day_of_month", "month_of_year", "day_of_week", "timezone"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "day_of_week" in self.fields:  # the library's help offers 7, which Celery refuses
            self.fields["day_of_week"].help_text = DAY_OF_WEEK_HELP

    def _cron(self, field: str) -> str:
        value: str = self.cleaned_data[field]
        cron_field_check(field, value)
        return value

    def clean_minute(self) -> str:
        return self._cron("minute")

    def clean_hour(self) -> str:
        return self._cron("hour")

    def clean_day_of_month(self) -> str:
        return self._cron("day_of_month")

    def clean_month_of_year(self) -> str:
        return self._cron("month_of_year")

    def clean_day_of_week(self) -> str:
        return self._cron("day_of_week")


class GuardedScheduleAdminMixin(StartGuardedAdminMixin):
    """A crontab, interval, solar or clocked schedule; a new one starts nothing."""

    # PeriodicTask's foreign key to this kind of schedule.
    periodic_task_field: str

    def periodic_tasks(self, objs: Any) -> Iterable[PeriodicTask]:
        return PeriodicTask.objects.filter(**{f"{self.periodic_task_field}__in": objs})


for _model, _library_admin, _field, _attrs in (
    (CrontabSchedule, CrontabScheduleAdmin, "crontab", {"form": CrontabForm}),
    (IntervalSchedule, IntervalScheduleAdmin, "interval", {}),
    (SolarSchedule, SolarScheduleAdmin, "solar", {}),
    (ClockedSchedule, ClockedScheduleAdmin, "clocked", {}),
):
    admin.site.unregister(_model)
    admin.site.register(
        _model,
        type(
            f"Guarded{_library_admin.__name__}",
            (GuardedScheduleAdminMixin, _library_admin),
            {"periodic_task_field": _field, **_attrs},
        ),
    )
