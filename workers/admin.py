"""Admin for jobs: TaskResult with requester, queue, duration and the live log."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.core.paginator import Paginator
from django.db.models import DurationField, ExpressionWrapper, F, OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils.functional import cached_property
from django_celery_results.admin import GroupResultAdmin, TaskResultAdmin
from django_celery_results.models import GroupResult, TaskResult

from workers import display, families, job_actions, selectors
from workers.admin_base import ImmutableAdminMixin, ReadOnlyAdminMixin
from workers.admin_live import LiveJobPageMixin
from workers.job_bulk_admin import JOB_BULK_ACTIONS
from workers.job_filters import JOB_LIST_FILTERS, known_task_names
from workers.job_registry import task_names
from workers.models import DiagnosticRun, Job, requester_text

# Counting every row of a large results table on each changelist view is what makes such
# pages slow; past this many matches the paginator stops counting.
COUNT_CAP = 10_000


class CappedCountPaginator(Paginator):
    @cached_property
    def count(self) -> int:
        queryset: Any = self.object_list
        # Only the key: the list's annotations (a subquery each) are not worth computing
        # for ten thousand rows that are only counted.
        return int(queryset.values("pk")[: COUNT_CAP + 1].count())


def _job_field(field: str) -> Subquery:
    return Subquery(Job.objects.filter(task_id=OuterRef("task_id")).values(field)[:1])


admin.site.unregister(TaskResult)


@admin.register(TaskResult)
class JobResultAdmin(LiveJobPageMixin, ReadOnlyAdminMixin, TaskResultAdmin):
    list_display = (
        "task_id",
        "task_name",
        "family",
        "state",
        "queue",
        "requester",
        "worker",
        "date_created",
        "duration",
    )
    list_filter = JOB_LIST_FILTERS
    search_fields = ("=task_id", "^task_name", "^worker")
    # Said under the box: a person's first try (a requester, a course) found nothing, silently.
    search_help_text = (
        "A job's whole id, or the start of its task's name (diagnostic_run_execute) or of its "
        "worker (main@…)."
    )
    date_hierarchy = None
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    actions = JOB_BULK_ACTIONS
    change_form_template = "admin/workers/taskresult/change_form.html"
    change_list_template = "admin/workers/taskresult/change_list.html"
    # State, worker, times, result and error are in the live summary above the form
    # (workers/job_live.html), which refreshes with the log; these fields do not change.
    # The id, task and schedule are shown by methods of their own: as fields, they carried
    # django-celery-results' help texts ("Celery ID for the Task that was run").
    fieldsets = (
        (None, {"fields": ("job_id", "task", "family", "queue", "requester", "arguments")}),
        ("Schedule", {"fields": ("schedule",), "classes": ("collapse",)}),
    )
    readonly_fields = (
        "job_id",
        "task",
        "family",
        "queue",
        "requester",
        "arguments",
        "schedule",
    )

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        # The schedule's name only for a job a schedule sent: others showed a "Schedule"
        # section holding a bare "-".
        if obj is not None and not obj.periodic_task_name:
            return self.fieldsets[:1]
        return self.fieldsets

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A job's page and log follow its family's view permission (workers/families.py).
        if obj is not None and not families.job_viewable(request.user, obj.task_name):
            return False
        return super().has_view_permission(request, obj)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[TaskResult], search_term: str
    ) -> tuple[QuerySet[TaskResult], bool]:
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        # The admin names a job by its task's short name (diagnostic_run_execute, on the Jobs
        # home and in the task filter); the stored name is dotted. A term that begins a short
        # name finds its jobs too, by the full names (an indexed IN, not a LIKE '%…').
        term = search_term.strip().lower()
        if term and " " not in term:
            names = [
                old_or_new
                for name in known_task_names()
                if display.task_short_name(name).lower().startswith(term)
                for old_or_new in task_names(name)
            ]
            if names:
                results = results | queryset.filter(task_name__in=names)
        return results, may_have_duplicates

    def get_queryset(self, request: HttpRequest) -> QuerySet[TaskResult]:
        # The list shows only jobs the user may open.
        queryset = selectors.task_results_viewable(super().get_queryset(request), user=request.user)
        return queryset.annotate(
            job_queue=_job_field("queue"),
            job_requester_kind=_job_field("requester_kind"),
            job_requester_label=_job_field("requester_label"),
            job_dead_lettered_at=_job_field("dead_lettered_at"),
            job_duration=ExpressionWrapper(
                F("date_done") - F("date_started"), output_field=DurationField()
            ),
        )

    @admin.display(description="queue", ordering="job_queue")
    def queue(self, obj: Any) -> str:
        return obj.job_queue or "—"

    @admin.display(description="requested by")
    def requester(self, obj: Any) -> str:
        if not obj.job_requester_kind:
            return "—"
        return requester_text(obj.job_requester_kind, obj.job_requester_label)

    @admin.display(description="job id")
    def job_id(self, obj: TaskResult) -> str:
        return obj.task_id

    @admin.display(description="task")
    def task(self, obj: TaskResult) -> str:
        return obj.task_name or "—"

    @admin.display(description="sent by the schedule")
    def schedule(self, obj: TaskResult) -> str:
        return obj.periodic_task_name or "—"

    @admin.display(description="family")
    def family(self, obj: TaskResult) -> str:
        return display.job_family(obj.task_name)

    @admin.display(description="state", ordering="status")
    def state(self, obj: Any) -> str:
        label = display.state_label(obj.status)
        # Its page says why and what to do; the list says where it is.
        if obj.job_dead_lettered_at and obj.status not in display.FINISHED_STATES:
            return f"{label} · in the dead-letter queue"
        return label

    @admin.display(description="arguments")
    def arguments(self, obj: TaskResult) -> str:
        return display.arguments_text(obj.task_args, obj.task_kwargs)

    @admin.display(description="duration", ordering="job_duration")
    def duration(self, obj: Any) -> str:
        # date_done is stamped on every save: it is an end only once the job has ended.
        if obj.status not in display.FINISHED_STATES:
            return "running" if obj.date_started else "—"
        if obj.job_duration is None:
            return "—"
        return display.duration_text(obj.job_duration.total_seconds())

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        # TaskResult's own name ("<Task: … (PENDING)>") carries the state at page load,
        # which the live summary below soon contradicts.
        result = self.get_object(request, object_id)
        context = {
            "job_actions": self.job_actions_context(request, result),
            "title": "Job",
            **(
                {"subtitle": f"{display.task_short_name(result.task_name)} {result.task_id}"}
                if result
                else {}
            ),
            **(extra_context or {}),
        }
        return super().change_view(request, object_id, form_url, context)

    def has_act_permission(self, request: HttpRequest) -> bool:
        """May act on some family's jobs: the bulk actions are offered (each job is checked
        against its own family's permission when acted on)."""
        return job_actions.may_act_on_jobs(request.user)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Records go through "Delete the records of the selected old jobs": the family's act
        # permission, young jobs kept, the Job row and log removed with the result, audited.
        # Django's delete (the page's button, its URL, "delete selected") would remove the
        # TaskResult alone, on delete_taskresult, of a job that may still be queued.
        return False

    def job_actions_context(
        self, request: HttpRequest, result: TaskResult | None
    ) -> dict[str, Any] | None:
        """What the job's page offers: only failed or lost jobs of a family the user may act
        on; a retry the family refuses is explained instead of offered."""
        if result is None or not request.user.has_perm(
            job_actions.job_action_permission(result.task_name)
        ):
            return None
        single = TaskResult.objects.filter(pk=result.pk)
        lost = single.filter(job_actions.lost_condition()).exists()
        if result.status not in job_actions.FAILED_STATES and not lost:
            return None  # nothing to do about a job that waits, runs or succeeded
        may_discard = job_actions.discard_candidates(single, user=request.user).exists()
        refusal = job_actions.job_retry_refusal(
            result=result, job=Job.objects.filter(task_id=result.task_id).first(), user=request.user
        )
        return {"retry_refusal": refusal, "may_discard": may_discard}

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra_context = {
            "title": "Jobs",
            **(extra_context or {}),
            "can_run_diagnostic": request.user.has_perm("workers.run_diagnostic"),
        }
        return super().changelist_view(request, extra_context)


@admin.register(DiagnosticRun)
class DiagnosticRunAdmin(ImmutableAdminMixin, admin.ModelAdmin):
    """Not deletable either: deleting a queued run would quietly cancel its job."""

    list_display = ("id", "state", "lines", "attempts", "task_id", "created_at", "finished_at")
    list_filter = ("state",)
    readonly_fields = [f.name for f in DiagnosticRun._meta.fields]


admin.site.unregister(GroupResult)


@admin.register(GroupResult)
class ReadOnlyGroupResultAdmin(ReadOnlyAdminMixin, GroupResultAdmin):
    """Written by Celery; deleting needs delete_groupresult (a group has no Job rows)."""


# These register the operations records, and django-celery-beat's and Django's user admins,
# guarded.
from workers import operations_admin, schedules_admin, users_admin  # noqa: E402, F401
