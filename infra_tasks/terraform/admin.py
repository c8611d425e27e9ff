"""Admin for terraform: workspaces (plan, destroy, drift check) and read-only runs (approve,
discard, cancel), each action behind its own permission."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from infra_tasks.terraform import selectors, services
from infra_tasks.terraform.configuration import short
from infra_tasks.terraform.models import (
    RunKind,
    RunState,
    TerraformRun,
    TerraformSecret,
    TerraformWorkspace,
)
from infra_tasks.terraform.secrets import (
    TERRAFORM_VARIABLE_NAME,
    SecretReferenceRefused,
    secret_reference_check,
)
from workers.admin_base import ImmutableAdminMixin
from workers.admin_live import LiveJobFieldsMixin
from workers.enqueue import BrokerUnavailable, Requester
from workers.models import Job

PLAN_PERM = "terraform.plan_terraformworkspace"
APPLY_PERM = "terraform.apply_terraformworkspace"
DESTROY_PERM = "terraform.destroy_terraformworkspace"
FORCE_UNLOCK_PERM = "terraform.force_unlock_terraformworkspace"


class WorkspaceForm(forms.ModelForm):
    class Meta:
        model = TerraformWorkspace
        fields = (
            "name",
            "directory",
            "variables",
            "require_distinct_approver",
            "run_time_limit_seconds",
            "notify",
        )

    def clean_directory(self) -> str:
        directory: str = self.cleaned_data["directory"]
        try:
            services.workspace_directory_validate(directory=directory)
        except services.RunError as exc:
            raise forms.ValidationError(str(exc)) from None
        return directory

    def clean_variables(self) -> dict[str, Any]:
        variables = self.cleaned_data["variables"]
        if not isinstance(variables, dict):
            raise forms.ValidationError("Give the variables as a JSON object.")
        bad = [name for name in variables if not TERRAFORM_VARIABLE_NAME.fullmatch(str(name))]
        if bad:
            raise forms.ValidationError(
                "Not a terraform variable name (a letter or _, then letters, digits, _ or -): "
                + ", ".join(repr(name) for name in bad)
            )
        return variables


class SecretForm(forms.ModelForm):
    class Meta:
        model = TerraformSecret
        fields = ("variable", "source", "reference")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["reference"].help_text = (
            f"Environment: a name starting with {settings.TERRAFORM_SECRET_ENV_PREFIX}; "
            f"SSM: under {', '.join(settings.TERRAFORM_SECRET_SSM_PREFIXES)}; "
            f"Secrets Manager: under {', '.join(settings.TERRAFORM_SECRET_MANAGER_PREFIXES)}."
        )

    def clean_variable(self) -> str:
        variable: str = self.cleaned_data["variable"]
        if not TERRAFORM_VARIABLE_NAME.fullmatch(variable):
            raise forms.ValidationError(
                "Not a terraform variable name (a letter or _, then letters, digits, _ or -)."
            )
        return variable

    def clean(self) -> dict[str, Any]:
        cleaned: dict[str, Any] = super().clean() or {}
        source, reference = cleaned.get("source"), cleaned.get("reference")
        if source and reference:
            try:
                secret_reference_check(source=source, reference=reference)
            except SecretReferenceRefused as exc:
                self.add_error("reference", str(exc))
        return cleaned


class SecretInline(admin.TabularInline):
    model = TerraformSecret
    form = SecretForm
    extra = 0


class DestroyConfirmForm(forms.Form):
    confirm_name = forms.CharField(label="Type the workspace name to confirm")

    def __init__(self, *args: Any, workspace: TerraformWorkspace, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.workspace = workspace

    def clean_confirm_name(self) -> str:
        name: str = self.cleaned_data["confirm_name"]
        if name != self.workspace.name:
            raise forms.ValidationError("That is not the workspace's name; nothing was queued.")
        return name


def _report(
    modeladmin: admin.ModelAdmin, request: HttpRequest, call: Any, ok: str | None = None
) -> bool:
    """Call a service; tell the user how it went (`ok`: the message when it worked)."""
    try:
        call()
    except (services.RunError, BrokerUnavailable) as exc:
        modeladmin.message_user(request, str(exc), level=messages.ERROR)
        return False
    if ok:
        modeladmin.message_user(request, ok, level=messages.SUCCESS)
    return True


@admin.register(TerraformWorkspace)
class TerraformWorkspaceAdmin(admin.ModelAdmin):
    form = WorkspaceForm
    inlines = [SecretInline]
    list_display = (
        "name",
        "directory",
        "last_run",
        "last_run_state",
        "drifted",
        "drift_checked_at",
    )
    list_filter = ("drifted",)
    search_fields = ("name", "directory")
    readonly_fields = ("recent_runs", "outputs", "drifted", "drift_checked_at", "created_at")
    filter_horizontal = ("notify",)
    actions = ["plan", "plan_destroy", "check_drift"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TerraformWorkspace]:
        return selectors.workspace_list_with_last_run()

    def get_readonly_fields(
        self, request: HttpRequest, obj: TerraformWorkspace | None = None
    ) -> tuple[str, ...]:
        # The name is the state's key in the bucket: renamed, the workspace would start afresh.
        readonly = tuple(super().get_readonly_fields(request, obj))
        return (*readonly, "name") if obj is not None else readonly

    @admin.display(description="last run", ordering="last_run_id")
    def last_run(self, obj: Any) -> str:
        if not obj.last_run_id:
            return "—"
        url = reverse("admin:terraform_terraformrun_change", args=[obj.last_run_id])
        return format_html('<a href="{}">#{}</a>', url, obj.last_run_id)

    @admin.display(description="last run state", ordering="last_run_state")
    def last_run_state(self, obj: Any) -> str:
        return RunState(obj.last_run_state).label if obj.last_run_state else "—"

    @admin.display(description="latest runs")
    def recent_runs(self, obj: TerraformWorkspace) -> str:
        if not obj.pk:
            return "—"
        runs = selectors.workspace_runs_latest(workspace=obj)
        if not runs:
            return "none yet"
        return format_html_join(
            "",
            '<div><a href="{}">#{}</a> {}: {}</div>',
            (
                (
                    reverse("admin:terraform_terraformrun_change", args=[run.pk]),
                    run.pk,
                    run.get_kind_display(),
                    run.get_state_display(),
                )
                for run in runs
            ),
        )

    def has_plan_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PLAN_PERM)

    def has_destroy_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(DESTROY_PERM)

    @admin.action(description="Plan (then approve to apply)", permissions=["plan"])
    def plan(self, request: HttpRequest, queryset: QuerySet[TerraformWorkspace]) -> None:
        for workspace in queryset:
            self._request(request, workspace, RunKind.APPLY)

    @admin.action(description="Check for drift now", permissions=["plan"])
    def check_drift(self, request: HttpRequest, queryset: QuerySet[TerraformWorkspace]) -> None:
        for workspace in queryset:
            self._request(request, workspace, RunKind.DRIFT_CHECK)

    @admin.action(description="Plan destroy… (asks for confirmation)", permissions=["destroy"])
    def plan_destroy(
        self, request: HttpRequest, queryset: QuerySet[TerraformWorkspace]
    ) -> HttpResponse | None:
        if queryset.count() != 1:
            self.message_user(request, "Destroy one workspace at a time.", level=messages.ERROR)
            return None
        return redirect("admin:terraform_workspace_destroy", queryset.get().pk)

    def get_urls(self) -> list[Any]:
        view = self.admin_site.admin_view
        return [
            path("<int:workspace_id>/plan/", view(self.plan_view), name="terraform_workspace_plan"),
            path(
                "<int:workspace_id>/drift-check/",
                view(self.drift_view),
                name="terraform_workspace_drift",
            ),
            path(
                "<int:workspace_id>/destroy/",
                view(self.destroy_view),
                name="terraform_workspace_destroy",
            ),
            *super().get_urls(),
        ]

    @method_decorator(require_POST)
    def plan_view(self, request: HttpRequest, workspace_id: int) -> HttpResponse:
        """The workspace page's Plan button: queue a plan, then show its run."""
        if not self.has_plan_permission(request):
            raise PermissionDenied
        workspace = get_object_or_404(TerraformWorkspace, pk=workspace_id)
        return self._to_run(self._request(request, workspace, RunKind.APPLY), workspace)

    @method_decorator(require_POST)
    def drift_view(self, request: HttpRequest, workspace_id: int) -> HttpResponse:
        if not self.has_plan_permission(request):
            raise PermissionDenied
        workspace = get_object_or_404(TerraformWorkspace, pk=workspace_id)
        return self._to_run(self._request(request, workspace, RunKind.DRIFT_CHECK), workspace)

    def destroy_view(self, request: HttpRequest, workspace_id: int) -> HttpResponse:
        """Plan destroy: asks for the workspace's name, typed, before queueing anything."""
        if not self.has_destroy_permission(request):
            raise PermissionDenied
        workspace = get_object_or_404(TerraformWorkspace, pk=workspace_id)
        form = DestroyConfirmForm(
            request.POST if request.method == "POST" else None, workspace=workspace
        )
        if form.is_valid():
            return self._to_run(self._request(request, workspace, RunKind.DESTROY), workspace)
        return TemplateResponse(
            request,
            "admin/terraform/destroy_confirm.html",
            {
                **self.admin_site.each_context(request),
                "title": f"Destroy {workspace}?",
                "opts": self.model._meta,
                "original": workspace,
                "workspace": workspace,
                "form": form,
            },
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {
            **(extra_context or {}),
            "can_plan": self.has_plan_permission(request),
            "can_destroy": self.has_destroy_permission(request),
        }
        return super().change_view(request, object_id, form_url, context)

    def _to_run(self, run: TerraformRun | None, workspace: TerraformWorkspace) -> HttpResponse:
        if run is None:
            return redirect("admin:terraform_terraformworkspace_change", workspace.pk)
        return redirect("admin:terraform_terraformrun_change", run.pk)

    def _request(
        self, request: HttpRequest, workspace: TerraformWorkspace, kind: RunKind
    ) -> TerraformRun | None:
        result: dict[str, TerraformRun] = {}

        def call() -> None:
            result["run"] = services.run_request(
                workspace=workspace, kind=kind, requester=Requester.for_user(request.user)
            )

        if not _report(self, request, call):
            return None
        run = result["run"]
        waits = ""
        if run.state == RunState.WAITING:
            active = selectors.run_active_id(workspace=workspace)
            waits = f"; it waits for run #{active} to end" if active else "; it waits its turn"
        self.message_user(
            request,
            format_html(
                '{}: {} requested as <a href="{}">run #{}</a>{}.',
                workspace,
                kind.label.lower(),
                reverse("admin:terraform_terraformrun_change", args=[run.pk]),
                run.pk,
                waits,
            ),
            level=messages.INFO if waits else messages.SUCCESS,
        )
        return run


@admin.register(TerraformRun)
class TerraformRunAdmin(LiveJobFieldsMixin, ImmutableAdminMixin, admin.ModelAdmin):
    list_display = (
        "id",
        "workspace",
        "kind",
        "state",
        "progress",
        "requester_label",
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
        return _job_link(obj.unlock_task_id)

    @admin.display(description="requested by")
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
        return (
            super()
            .get_queryset(request)
            .annotate(
                apply_done=Subquery(jobs.values("progress_done")[:1]),
                apply_total=Subquery(jobs.values("progress_total")[:1]),
            )
        )

    @admin.display(description="progress")
    def progress(self, obj: Any) -> str:
        if obj.apply_total:
            return f"{obj.apply_done or 0} / {obj.apply_total} resources"
        if obj.state == RunState.WAITING:
            return f"waiting ({selectors.run_queue_position(run=obj)} ahead)"
        return "—"

    @admin.display(description="plan job")
    def plan_job(self, obj: TerraformRun) -> str:
        return _job_link(obj.plan_task_id)

    @admin.display(description="apply job")
    def apply_job(self, obj: TerraformRun) -> str:
        return _job_link(obj.apply_task_id)

    @admin.action(description="Approve and apply the saved plan", permissions=["apply"])
    def approve(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset.select_related("workspace"):
            self._approve(request, run)

    @admin.action(description="Discard the plan", permissions=["plan"])
    def discard(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset:
            _report(
                self,
                request,
                lambda run=run: services.run_discard(run=run, user=request.user),
                f"{run}: plan discarded.",
            )

    @admin.action(description="Cancel", permissions=["plan"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset:
            _report(
                self,
                request,
                lambda run=run: services.run_cancel(run=run, user=request.user),
                f"{run}: cancel requested.",
            )

    @admin.action(
        description="Force-unlock the state lock a lost run left behind",
        permissions=["force_unlock"],
    )
    def force_unlock(self, request: HttpRequest, queryset: QuerySet[TerraformRun]) -> None:
        for run in queryset:
            _report(
                self,
                request,
                lambda run=run: services.run_state_unlock(run=run, user=request.user),
                f"{run}: force-unlock of its state lock queued.",
            )

    def _approve(self, request: HttpRequest, run: TerraformRun) -> None:
        if run.kind == RunKind.DESTROY and not request.user.has_perm(DESTROY_PERM):
            self.message_user(
                request,
                f"{run}: approving a destroy needs the destroy permission too.",
                level=messages.ERROR,
            )
            return
        if _report(self, request, lambda: services.run_approve(run=run, user=request.user)):
            run.refresh_from_db(fields=["apply_task_id"])
            self.message_user(
                request,
                format_html(
                    '{}: approved; <a href="{}">apply job</a> queued.',
                    run,
                    reverse("workers:job-detail", args=[run.apply_task_id]),
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
        """The buttons on a run's page: the same checks as the list actions."""
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

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        run = TerraformRun.objects.filter(pk=object_id).select_related("workspace").first()
        outdated = (
            selectors.run_plan_outdated(run=run)
            if run is not None and run.state == RunState.PLANNED
            else None
        )
        context = {
            **(extra_context or {}),
            "plan_outdated": outdated,
            "state_lock": run.state_lock if run is not None else None,
            "force_unlock_command": (
                selectors.force_unlock_hint(run) if run is not None and run.state_lock else ""
            ),
            "queue_position": selectors.run_queue_position(run=run) if run else 0,
            "can_plan_again": run is not None
            and run.is_finished
            and run.kind != RunKind.DRIFT_CHECK
            and self.has_plan_permission(request)
            and (run.kind != RunKind.DESTROY or request.user.has_perm(DESTROY_PERM)),
            "can_approve": run is not None
            and run.state == RunState.PLANNED
            and not outdated
            and self.has_apply_permission(request),
            "can_force_unlock": run is not None
            and bool(run.state_lock)
            and self.has_force_unlock_permission(request),
            "can_discard": run is not None
            and run.state == RunState.PLANNED
            and self.has_plan_permission(request),
            "can_cancel": run is not None
            and not run.is_finished
            and run.state != RunState.PLANNED
            and self.has_plan_permission(request),
        }
        return super().change_view(request, object_id, form_url, context)


def _job_link(task_id: str) -> str:
    if not task_id:
        return "—"
    return format_html(
        '<a href="{}">{}</a>', reverse("workers:job-detail", args=[task_id]), task_id
    )
