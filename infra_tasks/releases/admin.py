"""Releases in the admin: read-only records, and "Run pending migrations" behind a preview."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from infra_tasks.releases.models import Release, ReleaseState
from infra_tasks.releases.selectors import (
    migration_plan_findings,
    migration_plan_pending,
    plan_touches_records,
)
from infra_tasks.releases.services import StartStatus, release_start, version_validate
from workers.admin_base import ImmutableAdminMixin
from workers.admin_links import (
    job_link,
    job_links,
    refusal_report,
    started_job_link,
    started_job_redirect,
)
from workers.admin_live import LiveJobFieldsMixin
from workers.enqueue import Requester
from workers.errors import ApplicationError

RUN_PERMISSION = "releases.run_release"


class RunReleaseForm(forms.Form):
    version = forms.CharField(max_length=100, help_text="A name for this release, e.g. a git sha.")
    allow_unsafe = forms.BooleanField(
        required=False,
        label="Allow backward-incompatible migrations",
        help_text="Only when no old code runs alongside the new (recorded on the release).",
    )

    def clean_version(self) -> str:
        version = self.cleaned_data["version"].strip()
        try:
            version_validate(version)
        except ApplicationError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return version


@admin.register(Release)
class ReleaseAdmin(LiveJobFieldsMixin, ImmutableAdminMixin, admin.ModelAdmin):
    list_display = (
        "version",
        "state",
        "requester",
        "plan_size",
        "applied",
        "started_at",
        "finished_at",
        "job",
    )
    list_filter = ("state",)
    search_fields = ("=version",)
    change_list_template = "admin/releases/release/change_list.html"
    change_form_template = "admin/releases/release/change_form.html"
    fields = (
        "version",
        "state",
        "requester",
        "summary",
        "error",
        "job",
        "earlier_jobs",
        "attempts",
        "created_at",
        "started_at",
        "finished_at",
        "unsafe_allowed",
        "plan_table",
        "findings_list",
    )
    readonly_fields = fields
    # The job's live summary at the top of the page shows these while its record exists.
    live_fields = ("state", "summary", "error")

    @admin.display(description="backward-incompatible migrations")
    def unsafe_allowed(self, obj: Release) -> str:
        """Whether the gate was lifted, and whether that mattered: a bare "✓" reads as if
        something unsafe ran when nothing unsafe was pending (the dev stack's bootstrap)."""
        if not obj.allow_unsafe:
            return "not allowed (the default)"
        if obj.unsafe_findings:
            return f"allowed for the {len(obj.unsafe_findings)} operation(s) listed below"
        return "allowed, and not needed: nothing backward-incompatible was pending"

    @admin.display(description="requested by")
    def requester(self, obj: Release) -> str:
        return obj.requester

    @admin.display(description="plan")
    def plan_size(self, obj: Release) -> str:
        return "—" if obj.plan is None else f"{len(obj.plan)} migration(s)"

    @admin.display(description="job")
    def job(self, obj: Release) -> str:
        return job_link(obj.task_id)

    @admin.display(description="earlier attempts")
    def earlier_jobs(self, obj: Release) -> str:
        return job_links(obj.previous_task_ids)

    @admin.display(description="migration plan")
    def plan_table(self, obj: Release) -> str:
        if obj.plan is None:
            return "not computed yet (it is computed under the migration lock)"
        if not obj.plan:
            return "nothing was pending"
        return _plan_html(obj.plan)

    @admin.display(description="backward-incompatible operations")
    def findings_list(self, obj: Release) -> str:
        if not obj.unsafe_findings:
            return "none"
        return format_html_join(
            "",
            "<div>{}: {} — {}</div>",
            ((f["migration"], f["operation"], f["reason"]) for f in obj.unsafe_findings),
        )

    def get_urls(self) -> list[URLPattern]:
        run = path(
            "run/",
            self.admin_site.admin_view(self.run_view),
            name="releases_release_run",
        )
        return [run, *super().get_urls()]

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> Any:
        extra_context = {
            **(extra_context or {}),
            "can_run_release": request.user.has_perm(RUN_PERMISSION),
        }
        return super().changelist_view(request, extra_context)

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> Any:
        release = self.get_object(request, object_id)
        extra_context = {
            **(extra_context or {}),
            "can_run_again": release is not None
            and release.state == ReleaseState.FAILED
            and request.user.has_perm(RUN_PERMISSION),
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def run_view(self, request: HttpRequest) -> HttpResponse:
        """GET: the plan as it stands now and a form; POST: queue the release."""
        if not request.user.has_perm(RUN_PERMISSION):
            raise PermissionDenied
        if request.method == "POST":
            form = RunReleaseForm(request.POST)
            if form.is_valid():
                return self._start(request, **form.cleaned_data)
        else:
            # A failed release's "Run this release again" comes with its version.
            version = request.GET.get("version") or f"admin-{timezone.now():%Y%m%d-%H%M%S}"
            form = RunReleaseForm(initial={"version": version})
        plan = migration_plan_pending()
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Run pending migrations",
            "form": form,
            "plan": plan,
            "findings": migration_plan_findings(plan),
            "needs_bootstrap": plan_touches_records(plan),
            "may_view": self.has_view_permission(request),
        }
        return TemplateResponse(request, "admin/releases/release/run.html", context)

    def _start(self, request: HttpRequest, *, version: str, allow_unsafe: bool) -> HttpResponse:
        try:
            started = release_start(
                version=version,
                requester=Requester.for_user(request.user),
                allow_unsafe=allow_unsafe,
            )
        except ApplicationError as exc:  # a refusal, or the job queue unreachable
            refusal_report(self, request, exc)
            if not self.has_view_permission(request):
                return redirect("admin:releases_release_run")  # the list would refuse them
            return redirect("admin:releases_release_changelist")
        release = started.release
        # Whoever may run releases but not look at them is told on the Jobs home: the
        # release's page (and the job's, unless they may open it) would refuse them.
        may_view = self.has_view_permission(request, release)
        release_url = reverse("admin:releases_release_change", args=[release.pk])
        if started.status == StartStatus.ALREADY_SUCCEEDED:
            self.message_user(
                request,
                f"Release {version} already succeeded ({release.summary}): nothing to do.",
                level=messages.WARNING,
            )
            return redirect(release_url if may_view else reverse("admin:index"))
        if started.status == StartStatus.IN_PROGRESS:
            self.message_user(
                request, f"Release {version} is already {release.state}.", level=messages.WARNING
            )
        else:
            self.message_user(
                request,
                format_html(
                    "Release {} queued as {}.",
                    format_html('<a href="{}">{}</a>', release_url, version)
                    if may_view
                    else version,
                    started_job_link(request.user, release.task_id, f"job {release.task_id}"),
                ),
            )
        # The release's page shows its job live too, to those who may not open job pages.
        return started_job_redirect(
            request.user, release.task_id, fallback=release_url if may_view else "admin:index"
        )


def _plan_html(plan: list[dict[str, str]]) -> str:
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
        ((step["app"], step["name"], step["direction"]) for step in plan),
    )
    return format_html(
        "<table><thead><tr><th>app</th><th>migration</th><th>direction</th></tr></thead>"
        "<tbody>{}</tbody></table>",
        rows,
    )
