"""Reads of terraform workspaces and runs."""

from __future__ import annotations

from django.db.models import OuterRef, QuerySet, Subquery

from infra_tasks.terraform.models import FINISHED_STATES, RunState, TerraformRun, TerraformWorkspace


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


def run_queue_position(*, run: TerraformRun) -> int:
    """How many runs of the same workspace are ahead of a waiting run (0 if it is not waiting)."""
    if run.state != RunState.WAITING:
        return 0
    return (
        TerraformRun.objects.filter(workspace_id=run.workspace_id, id__lt=run.pk)
        .exclude(state__in=FINISHED_STATES)
        .count()
    )
