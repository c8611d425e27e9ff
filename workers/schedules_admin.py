"""django-celery-beat's schedules in the admin, under the project's one rule.

The library's PeriodicTask admin offers run, enable, disable and toggle to anyone who may
see the list (its actions name no permission), and "run" sends the task straight to the
broker: no Job row, no requester, no LogEntry. Here the three switches need
`change_periodictask`; run needs it too, plus the operate permission of the family of every
task it starts (workers/families.py), and goes through `job_enqueue` like any other job.
Saving a schedule for a task also needs that task's operate permission: a schedule is a
way of starting it.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from workers import families
from workers.enqueue import BrokerUnavailable, Requester
from workers.services import ScheduleRunRefused, periodic_tasks_run_now

admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class GuardedPeriodicTaskAdmin(PeriodicTaskAdmin):
    actions = ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")

    def get_form(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        form: Any = super().get_form(request, obj, **kwargs)
        user = request.user

        class StartableTaskForm(form):
            def clean(self) -> dict[str, Any]:
                cleaned: dict[str, Any] = super().clean()
                task = cleaned.get("task")
                if task and not families.job_startable(user, task):
                    raise forms.ValidationError(
                        "You may not start %(task)s jobs, so you may not schedule them.",
                        params={"task": task},
                        code="not_startable",
                    )
                return cleaned

        return StartableTaskForm

    # The library's switches, each now behind the change permission.
    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks now (as jobs)", permissions=["change"])
    def run_tasks(self, request: HttpRequest, queryset: QuerySet[PeriodicTask]) -> None:
        schedules = list(queryset)
        refused = [s.name for s in schedules if not families.job_startable(request.user, s.task)]
        if refused:
            self.message_user(
                request,
                "Nothing was run: you may not start the jobs of " + ", ".join(refused) + ".",
                level=messages.ERROR,
            )
            return
        try:
            task_ids = periodic_tasks_run_now(
                periodic_tasks=schedules, requester=Requester.for_user(request.user)
            )
        except (ScheduleRunRefused, BrokerUnavailable) as exc:
            self.message_user(request, f"Nothing was run: {exc}", level=messages.ERROR)
            return
        links = format_html_join(
            ", ",
            '<a href="{}">job {}</a>',
            ((reverse("workers:job-detail", args=[task_id]), task_id) for task_id in task_ids),
        )
        self.message_user(request, format_html("Queued {} job(s): {}.", len(task_ids), links))
