"""Reads of terraform workspaces and runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from celery import states
from django.conf import settings
from django.db.models import (
    Case,
    Count,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.urls import reverse
from django_celery_results.models import TaskResult

from infra_tasks.terraform import cli, configuration
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


def run_holding_workspace(*, workspace: TerraformWorkspace) -> TerraformRun | None:
    """The oldest unfinished run of the workspace: a new run waits behind it (and behind any
    run waiting after it) until it ends, e.g. a plan until it is approved or discarded."""
    return (
        TerraformRun.objects.filter(workspace=workspace)
        .exclude(state__in=FINISHED_STATES)
        .order_by("id")
        .first()
    )


def _runs_ahead(run: TerraformRun) -> QuerySet[TerraformRun]:
    """The unfinished runs of the workspace queued before `run`."""
    return TerraformRun.objects.filter(workspace_id=run.workspace_id, id__lt=run.pk).exclude(
        state__in=FINISHED_STATES
    )


def run_queue_position(*, run: TerraformRun) -> int:
    """How many runs of the same workspace are ahead of a waiting run (0 if it is not waiting)."""
    if run.state != RunState.WAITING:
        return 0
    return _runs_ahead(run).count()


def run_first_ahead(*, run: TerraformRun) -> TerraformRun | None:
    """The oldest unfinished run of the workspace ahead of a waiting run: the one to finish,
    approve or discard for it to start (None if it is not waiting)."""
    if run.state != RunState.WAITING:
        return None
    return _runs_ahead(run).order_by("id").first()


def runs_with_queue_position(runs: QuerySet[TerraformRun]) -> QuerySet[TerraformRun]:
    """`runs` annotated with `queue_ahead`: `run_queue_position` of each, in the same query."""
    ahead = (
        TerraformRun.objects.filter(workspace_id=OuterRef("workspace_id"), id__lt=OuterRef("pk"))
        .exclude(state__in=FINISHED_STATES)
        .order_by()
        .values("workspace_id")
        .annotate(count=Count("id"))
        .values("count")
    )
    return runs.annotate(
        queue_ahead=Case(
            When(state=RunState.WAITING, then=Coalesce(Subquery(ahead), 0)),
            default=Value(0),
            output_field=IntegerField(),
        )
    )


def workspace_inputs(*, workspace: TerraformWorkspace) -> dict[str, Any]:
    """What a plan is made with besides its files: the variables, and the secrets by
    reference (never their values)."""
    return {
        "variables": dict(workspace.variables or {}),
        "secrets": {
            secret.variable: {"source": secret.source, "reference": secret.reference}
            for secret in workspace.secrets.order_by("variable")
        },
    }


def workspace_configuration_digest(*, workspace: TerraformWorkspace) -> str:
    """The digest of the workspace's configuration as it is now under TERRAFORM_ROOT."""
    directory = cli.workspace_dir(Path(settings.TERRAFORM_ROOT), workspace.directory)
    if not directory.is_dir():
        raise configuration.ConfigurationError(f"{workspace.directory!r} does not exist")
    return configuration.digest(configuration.collect(directory))


def run_plan_outdated(*, run: TerraformRun) -> str | None:
    """Why a run's plan no longer fits its workspace (the configuration or the variables
    changed since it was made), or None while it does."""
    reasons = []
    if run.config_sha256:
        try:
            now = workspace_configuration_digest(workspace=run.workspace)
        except (cli.WorkspacePathError, configuration.ConfigurationError, OSError) as exc:
            reasons.append(
                f"The configuration of {run.workspace} cannot be read here ({exc}), so this "
                "plan cannot be checked against it."
            )
        else:
            if now != run.config_sha256:
                reasons.append(
                    f"This plan is for configuration {configuration.short(run.config_sha256)}; "
                    f"the workspace now has {configuration.short(now)}."
                )
    if run.plan_inputs is not None:
        planned, current = run.plan_inputs, workspace_inputs(workspace=run.workspace)
        changed = sorted(
            name
            for part in ("variables", "secrets")
            for name in set(planned.get(part) or {}) | set(current[part])
            if (planned.get(part) or {}).get(name) != current[part].get(name)
        )
        if changed:
            reasons.append(
                "This plan was made with other variables than the workspace has now "
                f"({', '.join(changed)})."
            )
    return " ".join(reasons) or None


def force_unlock_hint(run: TerraformRun) -> str:
    """The command that releases a run's recorded state lock by hand."""
    lock_id = (run.state_lock or {}).get("ID") or "<lock id>"
    return f"terraform force-unlock -force {lock_id}"


def run_unlock_in_progress(*, run: TerraformRun) -> bool:
    """A force-unlock job of the run's state lock is queued or running."""
    return (
        bool(run.unlock_task_id)
        and TaskResult.objects.filter(
            task_id=run.unlock_task_id, status__in=states.UNREADY_STATES
        ).exists()
    )


def state_lock_text(lock: dict[str, Any]) -> str:
    return (
        f"ID {lock.get('ID') or '?'}, {lock.get('Operation') or 'operation unknown'} "
        f"by {lock.get('Who') or 'unknown'} since {lock.get('Created') or '?'}"
    )


def run_job_subject(task_id: str) -> JobSubject | None:
    """The run a plan, apply or state-unlock job belongs to, for the job's page."""
    run = (
        TerraformRun.objects.select_related("workspace")
        .filter(Q(plan_task_id=task_id) | Q(apply_task_id=task_id) | Q(unlock_task_id=task_id))
        .first()
    )
    if run is None:
        return None
    step = {run.apply_task_id: "apply", run.unlock_task_id: "state unlock"}.get(task_id, "plan")
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
