"""Reads of terraform workspaces and runs."""

from __future__ import annotations

from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.urls import reverse

from infra_tasks.terraform.models import (
    ACTIVE_STATES,
    FINISHED_STATES,
    RunState,
    TerraformRun,
    TerraformWorkspace,
)
from workers.subjects import JobSubject


def terraform_run_list_latest(*, limit: int = 10) -> list[TerraformRun]:
    """The most recent runs across workspaces, newest first (for dashboards)."""
    return list(
        TerraformRun.objects.select_related(
            "workspace", "requested_by", "approved_by", "cancel_requested_by"
        ).order_by("-id")[:limit]
    )


def workspace_list_with_last_run() -> QuerySet[TerraformWorkspace]:
    """Workspaces annotated with their latest run's id and state."""
    latest = TerraformRun.objects.filter(workspace=OuterRef("pk")).order_by("-id")
    return TerraformWorkspace.objects.annotate(
        last_run_id=Subquery(latest.values("id")[:1]),
        last_run_state=Subquery(latest.values("state")[:1]),
    )


def workspace_runs_latest(*, workspace: TerraformWorkspace, limit: int = 5) -> list[TerraformRun]:
    return list(workspace.runs.order_by("-id")[:limit])


def run_active_id(*, workspace: TerraformWorkspace) -> int | None:
    """The run holding the workspace (queued, planning, planned, applying), if any."""
    return (
        TerraformRun.objects.filter(workspace=workspace, state__in=ACTIVE_STATES)
        .values_list("id", flat=True)
        .first()
    )


def run_queue_position(*, run: TerraformRun) -> int:
    """How many runs of the same workspace are ahead of a waiting run (0 if it is not waiting)."""
    if run.state != RunState.WAITING:
        return 0
    return (
        TerraformRun.objects.filter(workspace_id=run.workspace_id, id__lt=run.pk)
        .exclude(state__in=FINISHED_STATES)
        .count()
    )


def run_job_subject(task_id: str) -> JobSubject | None:
    """The run a plan or apply job belongs to, for the job's page."""
    run = (
        TerraformRun.objects.select_related("workspace")
        .filter(Q(plan_task_id=task_id) | Q(apply_task_id=task_id))
        .first()
    )
    if run is None:
        return None
    step = "apply" if run.apply_task_id == task_id else "plan"
    return JobSubject(
        label=f"Run #{run.pk} of {run.workspace} ({run.get_kind_display().lower()}), its {step}",
        url=reverse("admin:terraform_terraformrun_change", args=[run.pk]),
        state=run.get_state_display(),
        message=run.message,
    )


def run_ending_of_step(*, run_id: int, task_id: str) -> str | None:
    """The message of a run that ended during the step of job `task_id` (its plan before any
    apply was queued, or its apply); None when the run ended in another step."""
    run = TerraformRun.objects.filter(pk=run_id).only("apply_task_id", "message", "state").first()
    if run is None or not run.is_finished:
        return None
    if run.apply_task_id and run.apply_task_id != task_id:
        return None
    return run.message or run.get_state_display()
