"""The workspace admin: plan, plan destroy (confirmed by the typed name), check for drift."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import widgets
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from infra_tasks.terraform import selectors
from infra_tasks.terraform.admin.common import (
    APPLY_PERM,
    DESTROY_PERM,
    PLAN_PERM,
    service_call_report,
)
from infra_tasks.terraform.admin.forms import DestroyConfirmForm, SecretInline, WorkspaceForm
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.services import runs
from workers.admin_base import HistoryKeepsRecordMixin
from workers.admin_links import admin_page_opens
from workers.enqueue import Requester


@admin.register(TerraformWorkspace)
class TerraformWorkspaceAdmin(HistoryKeepsRecordMixin, admin.ModelAdmin):
    history_name = "runs"
    form = WorkspaceForm
    inlines = [SecretInline]
    list_display = (
        "name",
        "directory",
        "last_run",
        "last_run_state",
        "drift",
        "drift_checked_at",
    )
    list_filter = ("drifted",)
    search_fields = ("name", "directory")
    readonly_fields = (
        "recent_runs",
        "outputs",
        "drift",
        "drift_checked_at",
        "destroyed_at",
        "created_at",
    )
    filter_horizontal = ("notify",)
    actions = ["plan", "plan_destroy", "check_drift"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[TerraformWorkspace]:
        return selectors.workspace_list_with_last_run()

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        # The two-box chooser is titled with the field's name: "notify" read "Available
        # notify", "Choose all notify". It names who is e-mailed instead.
        if db_field.name == "notify":
            kwargs.setdefault("label", "Drift e-mails to")
            kwargs.setdefault(
                "widget", widgets.FilteredSelectMultiple("staff to e-mail", is_stacked=False)
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_readonly_fields(
        self, request: HttpRequest, obj: TerraformWorkspace | None = None
    ) -> tuple[str, ...]:
        # The name is the state's key in the bucket: renamed, the workspace would start afresh.
        readonly = tuple(super().get_readonly_fields(request, obj))
        if obj is None:
            return readonly
        if not self.has_change_permission(request, obj):
            readonly = (*readonly, "drift_emails_to")
        return (*readonly, "name")

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        # Read-only, the chooser was a bare "Notify:" row with nothing after it when nobody is
        # chosen: who is e-mailed is said instead, the default included.
        fields = [f for f in super().get_fields(request, obj) if f != "drift_emails_to"]
        if obj is not None and not self.has_change_permission(request, obj):
            fields = ["drift_emails_to" if f == "notify" else f for f in fields]
        return fields

    @admin.display(description="drift e-mails to")
    def drift_emails_to(self, obj: TerraformWorkspace) -> str:
        names = sorted(user.get_username() for user in obj.notify.all())
        return ", ".join(names) or "every active staff member (no one chosen)"

    @admin.display(description="last run", ordering="last_run_id")
    def last_run(self, obj: Any) -> str:
        if not obj.last_run_id:
            return "—"
        return run_link(obj.last_run_id)

    @admin.display(description="last run state", ordering="last_run_state")
    def last_run_state(self, obj: Any) -> str:
        return RunState(obj.last_run_state).label if obj.last_run_state else "—"

    @admin.display(description="drifted", ordering="drifted")
    def drift(self, obj: TerraformWorkspace) -> str:
        if obj.destroyed_at is not None:
            return "not checked: destroyed on purpose"
        # "No" before the first check would claim a check that never happened.
        if obj.drift_checked_at is None:
            return "not checked yet"
        return "yes: drift found" if obj.drifted else "no"

    @admin.display(description="latest runs")
    def recent_runs(self, obj: TerraformWorkspace) -> str:
        if not obj.pk:
            return "—"
        runs = selectors.workspace_runs_latest(workspace=obj)
        if not runs:
            return "none yet"
        return format_html_join(
            "",
            "<div>{} {}: {}</div>",
            ((run_link(run.pk), run.get_kind_display(), run.get_state_display()) for run in runs),
        )

    def has_plan_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(PLAN_PERM)

    # A workspace is what an apply does: its directory, variables, secrets and whether the
    # requester may approve their own plan. Adding, editing or removing one therefore needs
    # the apply permission besides Django's model permission (as a managed database needs
    # its operate permission); without it the page is read-only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and request.user.has_perm(APPLY_PERM)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return super().has_change_permission(request, obj) and request.user.has_perm(APPLY_PERM)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Its runs are the record of what was done to it and keep it (nobody may delete a run):
        # a Delete button would only lead to "Cannot delete terraform workspace".
        if obj is not None and obj.runs.exists():
            return False
        return super().has_delete_permission(request, obj) and request.user.has_perm(APPLY_PERM)

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
        if not (self.has_plan_permission(request) and self.has_view_or_change_permission(request)):
            raise PermissionDenied
        workspace = get_object_or_404(TerraformWorkspace, pk=workspace_id)
        return self._to_run(self._request(request, workspace, RunKind.APPLY), workspace)

    @method_decorator(require_POST)
    def drift_view(self, request: HttpRequest, workspace_id: int) -> HttpResponse:
        if not (self.has_plan_permission(request) and self.has_view_or_change_permission(request)):
            raise PermissionDenied
        workspace = get_object_or_404(TerraformWorkspace, pk=workspace_id)
        return self._to_run(self._request(request, workspace, RunKind.DRIFT_CHECK), workspace)

    def destroy_view(self, request: HttpRequest, workspace_id: int) -> HttpResponse:
        """Plan destroy: asks for the workspace's name, typed, before queueing anything.

        Like the list's actions, these buttons' views need the workspace's view permission
        besides their own: a workspace nobody may look at is not planned (nor shown) by
        typing its id into the URL."""
        if not (
            self.has_destroy_permission(request) and self.has_view_or_change_permission(request)
        ):
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
                # Said before the name is typed: a destroy queued now would wait behind it.
                "holding": selectors.run_holding_workspace(workspace=workspace),
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
        # To the run's page if this person may open it (one who may plan but not see runs
        # met a 403 there), else back to the workspace, where the message says what started.
        if run is None or not admin_page_opens(TerraformRun):
            return redirect("admin:terraform_terraformworkspace_change", workspace.pk)
        return redirect("admin:terraform_terraformrun_change", run.pk)

    def _request(
        self, request: HttpRequest, workspace: TerraformWorkspace, kind: RunKind
    ) -> TerraformRun | None:
        result: dict[str, TerraformRun] = {}

        def call() -> None:
            result["run"] = runs.run_request(
                workspace=workspace, kind=kind, requester=Requester.for_user(request.user)
            )

        if not service_call_report(self, request, call):
            return None
        run = result["run"]
        waits = ""
        if run.state == RunState.WAITING:
            active = selectors.run_active_id(workspace=workspace)
            waits = f"; it waits for run #{active} to end" if active else "; it waits its turn"
            # Its plan job (audited as this person's) is queued only when its turn comes,
            # perhaps never (cancelled first): the request is in the run's history now.
            self.log_addition(request, run, f"Requested ({kind.label.lower()}); waits its turn.")
        self.message_user(
            request,
            format_html(
                # "Workspace …": the admin capitalises a message's first letter, and a
                # workspace's name is its own ("demo", not "Demo").
                "Workspace {}: {} requested as run {}{}.",
                workspace,
                kind.label.lower(),
                run_link(run.pk),
                waits,
            ),
            level=messages.INFO if waits else messages.SUCCESS,
        )
        return run


def run_link(run_id: int) -> str:
    """ "#id", linked to the run's page for those who may open it (a workspace's viewer may
    not see its runs)."""
    if not admin_page_opens(TerraformRun):
        return f"#{run_id}"
    url = reverse("admin:terraform_terraformrun_change", args=[run_id])
    return format_html('<a href="{}">#{}</a>', url, run_id)
