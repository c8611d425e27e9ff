"""The run admin: read-only runs, with approve, discard, cancel and force-unlock as list
actions and as buttons on a run's page (the same checks either way)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from infra_tasks.terraform import selectors
from infra_tasks.terraform.admin.common import (
    APPLY_PERM,
    DESTROY_PERM,
    FORCE_UNLOCK_PERM,
    PLAN_PERM,
    service_call_report,
)
from infra_tasks.terraform.configuration import short
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.services.runs import (
    lost_after,
    run_approve,
    run_cancel,
    run_discard,
    run_state_unlock,
    silent_seconds,
)
from workers.admin_base import ImmutableAdminMixin
from workers.admin_links import admin_page_opens, job_link
from workers.admin_live import LiveJobFieldsMixin
from workers.models import Job


@admin.register(TerraformRun)
class TerraformRunAdmin(LiveJobFieldsMixin, ImmutableAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "workspace",
        "kind",
        "state",
        "progress",
        "requester",
        "created_at",
        "approved_by",
        "finished_at",
    )
    list_filter = ("state", "kind", "workspace")
    list_select_related = ("workspace", "approved_by")
    search_fields = ("=id", "workspace__name", "plan_task_id", "apply_task_id")
    actions = ["approve", "discard", "cancel", "force_unlock"]
    change_form_template = "admin/terraform/terraformrun/change_form.html"
    fieldsets = (
        (
            None,
            {"fields": ("workspace", "kind", "state", "message", "plan_summary_text", "progress")},
        ),
        (
            "Who and when",
            {
                "fields": (
                    "requester",
                    "created_at",
                    "approved_by",
                    "approved_at",
                    "cancel_requested_by",
                    "cancel_requested_at",
                    "started_at",
                    "finished_at",
                )
            },
        ),
        ("Jobs", {"fields": ("plan_job", "apply_job", "worker", "heartbeat_at")}),
        (
            "Pinned configuration and state",
            {"fields": ("configuration", "state_location", "state_lock_text", "unlock_job")},
        ),
    )
    # Run records are read-only: every field shown is a read-only one.
    readonly_fields = flatten_fieldsets(fieldsets)
    # Shown by the current step's live job summary at the top of the page instead.
    live_fields = ("state", "message", "progress")

    def live_task_id(self, obj: TerraformRun) -> str:
        return obj.current_task_id

    def has_apply_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(APPLY_PERM)

    def has_plan_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PLAN_PERM)

    def has_force_unlock_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(FORCE_UNLOCK_PERM)

    @admin.display(description="configuration")
    def configuration(self, obj: TerraformRun) -> str:
        if not obj.config_sha256:
            return "—"
        return f"{short(obj.config_sha256)} (bundle {short(obj.bundle_sha256)})"

    @admin.display(description="state")
    def state_location(self, obj: TerraformRun) -> str:
        if obj.state_key:
            return obj.state_key
        return "kept by the configuration's own backend" if obj.config_sha256 else "—"

    @admin.display(description="state lock left behind")
    def state_lock_text(self, obj: TerraformRun) -> str:
        if obj.state_lock:
            return selectors.state_lock_text(obj.state_lock)
        if obj.state_lock_checked_at:
            return "none"
        return "—"

    @admin.display(description="unlock job")
    def unlock_job(self, obj: TerraformRun) -> str:
        return job_link(obj.unlock_task_id)

    @admin.display(description="requested by", ordering="requester_label")
    def requester(self, obj: TerraformRun) -> str:
        return obj.requester

    @admin.display(description="plan")
    def plan_summary_text(self, obj: TerraformRun) -> str:
        summary = obj.plan_summary
        if summary is None:
            return "—"
        return (
            f"{summary['add']} to add, {summary['change']} to change, "
            f"{summary['destroy']} to destroy"
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[TerraformRun]:
        jobs = Job.objects.filter(task_id=OuterRef("apply_task_id"))
        # In the list's one query: a waiting run's place in its workspace's queue.
        runs = selectors.runs_with_queue_position(super().get_queryset(request))
        return runs.annotate(
            apply_done=Subquery(jobs.values("progress_done")[:1]),
            apply_total=Subquery(jobs.values("progress_total")[:1]),
        )

    @admin.display(description="progress")
    def progress(self, obj: Any) -> str:
        if obj.apply_total:
            return f"{obj.apply_done or 0} / {obj.apply_total} resources"
        if obj.state == RunState.WAITING:
            return f"waiting ({obj.queue_ahead} ahead)"
        return "—"

    @admin.display(description="plan job")
    def plan_job(self, obj: TerraformRun) -> str:
        return job_link(obj.plan_task_id)

    @admin.display(description="apply job")
    def apply_job(self, obj: TerraformRun) -> str:
        return job_link(obj.apply_task_id)

    @admin.action(description="Approve and apply the saved plan", permissions=["apply"])
    def approve(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset.select_related("workspace"):
            self._approve(request, run)

    @admin.action(description="Discard the plan", permissions=["plan"])
    def discard(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset:
            if service_call_report(
                self,
                request,
                lambda run=run: run_discard(run=run, user=request.user),
                f"Run {run}: plan discarded.",
            ):
                # In the run's history, as approving and unlocking are (through their jobs).
                self.log_change(request, run, "Discarded the plan.")

    @admin.action(description="Cancel", permissions=["plan"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset:
            if service_call_report(
                self,
                request,
                lambda run=run: run_cancel(run=run, user=request.user),
                f"Run {run}: cancel requested.",
            ):
                self.log_change(request, run, "Asked to cancel the run.")

    @admin.action(
        description="Force-unlock the state lock a lost run left behind",
        permissions=["force_unlock"],
    )
    def force_unlock(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset:
            service_call_report(
                self,
                request,
                lambda run=run: run_state_unlock(run=run, user=request.user),
                f"Run {run}: force-unlock of its state lock queued.",
            )

    def _approve(self, request: HttpRequest, run: TerraformRun) -> None:
        if run.kind == RunKind.DESTROY and not request.user.has_perm(DESTROY_PERM):
            self.message_user(
                request,
                f"Run {run}: approving a destroy needs the destroy permission too.",
                level=messages.ERROR,
            )
            return
        if service_call_report(self, request, lambda: run_approve(run=run, user=request.user)):
            run.refresh_from_db(fields=["apply_task_id"])
            self.message_user(
                request,
                format_html(
                    "Run {}: approved; {} queued.", run, job_link(run.apply_task_id, "apply job")
                ),
                level=messages.SUCCESS,
            )

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:run_id>/do/<str:what>/", view(self.run_button), name="terraform_run_do"),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def run_button(self, request: HttpRequest, run_id: int, what: str) -> HttpResponse:
        """The buttons on a run's page: the same checks as the list actions, whose list
        needs the runs' view permission (a run's id in the URL is no way around it)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        run = get_object_or_404(TerraformRun.objects.select_related("workspace"), pk=run_id)
        this_run = TerraformRun.objects.filter(pk=run_id)
        if what == "approve" and self.has_apply_permission(request):
            self._approve(request, run)
        elif what == "discard" and self.has_plan_permission(request):
            self.discard(request, this_run)
        elif what == "cancel" and self.has_plan_permission(request):
            self.cancel(request, this_run)
        elif what == "force_unlock" and self.has_force_unlock_permission(request):
            self.force_unlock(request, this_run)
        else:
            raise PermissionDenied
        return HttpResponseRedirect(reverse("admin:terraform_terraformrun_change", args=[run_id]))

    @staticmethod
    def _destroys_again(run: TerraformRun) -> bool:
        """Whether the run page's next step is another destroy plan: after one that did not
        destroy (failed, cancelled, discarded). Once a destroy is applied, the useful next
        step is a plan that builds the workspace again."""
        return run.kind == RunKind.DESTROY and run.state != RunState.APPLIED

    @staticmethod
    def _own_plan_under_four_eyes(request: HttpRequest, run: TerraformRun) -> bool:
        """The requester's own plan in a workspace that wants someone else to approve it:
        an Approve button would only be refused."""
        return bool(
            run.workspace.require_distinct_approver and run.requested_by_id == request.user.pk
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        # The run Django's change_view renders too, read after its job (LiveJobPageMixin): the
        # buttons and the plan shown follow from one reading.
        run = self.get_object(request, object_id)
        outdated = (
            selectors.run_plan_outdated(run=run)
            if run is not None and run.state == RunState.PLANNED
            else None
        )
        unlocking = run is not None and selectors.run_unlock_in_progress(run=run)
        context = {
            **(extra_context or {}),
            "plan_outdated": outdated,
            "state_lock": run.state_lock if run is not None else None,
            "force_unlock_command": (
                selectors.force_unlock_hint(run) if run is not None and run.state_lock else ""
            ),
            "queue_position": selectors.run_queue_position(run=run) if run else 0,
            "queue_first": selectors.run_first_ahead(run=run) if run else None,
            # Seeing runs is no permission to open their workspaces' pages.
            "workspace_opens": run is not None
            and admin_page_opens(TerraformWorkspace, run.workspace, site=self.admin_site),
            "can_plan_again": run is not None
            and run.is_finished
            and run.kind != RunKind.DRIFT_CHECK
            and self.has_plan_permission(request)
            and (not self._destroys_again(run) or request.user.has_perm(DESTROY_PERM)),
            "plans_destroy_again": run is not None and self._destroys_again(run),
            "can_approve": run is not None
            and run.state == RunState.PLANNED
            and not outdated
            and not self._own_plan_under_four_eyes(request, run)
            and self.has_apply_permission(request)
            and (run.kind != RunKind.DESTROY or request.user.has_perm(DESTROY_PERM)),
            "four_eyes_wait": run is not None
            and run.state == RunState.PLANNED
            and self._own_plan_under_four_eyes(request, run),
            "unlocking": unlocking,
            "unlock_job": job_link(run.unlock_task_id, f"job {run.unlock_task_id}")
            if unlocking and run is not None
            else "",
            "can_force_unlock": run is not None
            and bool(run.state_lock)
            and not unlocking
            and self.has_force_unlock_permission(request),
            "can_discard": run is not None
            and run.state == RunState.PLANNED
            and self.has_plan_permission(request),
            # Once asked to stop, the worker is stopping terraform: a second press only said
            # "already being cancelled". It is offered again if that worker went silent.
            "can_cancel": run is not None
            and not run.is_finished
            and run.state != RunState.PLANNED
            and (run.cancel_requested_at is None or silent_seconds(run) >= lost_after())
            and self.has_plan_permission(request),
        }
        return super().change_view(request, object_id, form_url, context)
