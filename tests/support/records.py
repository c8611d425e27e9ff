"""One record of each kind a person opens, with its job: what admin page tests walk."""

from __future__ import annotations

from courses.models import Course
from infra_tasks.rds.models import DatabaseAction
from infra_tasks.releases.models import Release
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from tests.infra_tasks.rds.support import register
from tests.support.jobs import job_record
from workers.models import DiagnosticRun, RequesterKind


def seed_records() -> None:
    for task_id, name in (
        ("job-plan", "infra_tasks.terraform.tasks.run_plan_execute"),
        ("job-action", "infra_tasks.rds.tasks.database_action_execute"),
        ("job-release", "infra_tasks.releases.tasks.release_execute"),
        ("job-diagnostic", "workers.tasks.diagnostic_run_execute"),
    ):
        job_record(task_id, name, status="STARTED")
    workspace = TerraformWorkspace.objects.create(name="demo", directory="demo")
    TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.PLANNED,
        requester_kind="cli",
        requester_label="test",
        plan_task_id="job-plan",
        plan_summary={"add": 1, "change": 0, "destroy": 0},
        plan_changes={
            "resources": [{"address": "a.b", "action": "create", "reason": "", "attributes": []}],
            "outputs": [],
            "omitted": 0,
        },
    )
    database = register("pages-db")
    DatabaseAction.objects.create(
        database=database,
        action="stop",
        requester_kind=RequesterKind.CLI,
        requester_label="test",
        task_id="job-action",
    )
    Release.objects.create(
        version="v1",
        requester_kind=RequesterKind.CLI,
        requester_label="test",
        task_id="job-release",
    )
    DiagnosticRun.objects.create(task_id="job-diagnostic")
    Course.objects.create(title="Course", slug="course")
