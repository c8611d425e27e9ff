"""A plan is pinned to what it was made from: approval is refused once the workspace's
configuration or variables changed, and the apply refuses a stored plan or bundle that is not
byte for byte what the plan stored. Real worker, terraform and S3."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User

from infra_tasks.terraform import configuration, remote
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.selectors import workspace_configuration_digest
from infra_tasks.terraform.services.execution import BUNDLE_ALTERED_MESSAGE, PLAN_ALTERED_MESSAGE
from infra_tasks.terraform.services.runs import (
    RunError,
    run_approve,
    run_discard,
    run_request,
)
from tests.infra_tasks.terraform.conftest import outside_directory, s3_objects
from tests.support.servers import AwsEndpoint, WorkerProcess, wait_until
from workers.enqueue import Requester

pytestmark = pytest.mark.django_db(transaction=True)

MakeWorkspace = Callable[..., TerraformWorkspace]


def user(name: str) -> User:
    return get_user_model().objects.create_user(name, is_staff=True)


def planned(workspace: TerraformWorkspace, by: User) -> TerraformRun:
    run = run_request(workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(by))
    return wait_state(run, RunState.PLANNED, RunState.FAILED, RunState.NO_CHANGES)


def wait_state(run: TerraformRun, *states: RunState) -> TerraformRun:
    def reached() -> bool:
        run.refresh_from_db()
        return run.state in states

    wait_until(reached, timeout=90, message=f"run #{run.pk} to be {'/'.join(states)}")
    return run


def state_resources(aws: AwsEndpoint, workspace: TerraformWorkspace) -> list[str]:
    key = remote.state_key(workspace.name)
    state = s3_objects(aws, key).get(key)
    return sorted(r["name"] for r in json.loads(state)["resources"]) if state else []


def put(aws: AwsEndpoint, key: str, data: bytes) -> None:
    aws.client("s3").put_object(Bucket=settings.TERRAFORM_STATE_BUCKET, Key=key, Body=data)


def test_a_configuration_edited_after_the_plan_refuses_approval_and_a_fresh_plan_applies(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    alice, bob = user("alice"), user("bob")
    workspace = make_workspace()
    run = planned(workspace, alice)
    assert run.state == RunState.PLANNED, run.message
    main_tf = Path(settings.TERRAFORM_ROOT) / workspace.directory / "main.tf"
    main_tf.write_text(main_tf.read_text() + '\nresource "terraform_data" "third" {}\n')
    now = workspace_configuration_digest(workspace=workspace)

    with pytest.raises(RunError) as refused:
        run_approve(run=run, user=bob)
    assert str(refused.value) == (
        f"This plan is for configuration {run.config_sha256[:12]}; the workspace now has "
        f"{now[:12]}. Approving it needs a fresh plan: discard this one and plan again."
    )
    run.refresh_from_db()
    assert (run.state, run.apply_task_id, run.approved_by) == (RunState.PLANNED, "", None)

    run_discard(run=run, user=bob)
    fresh = planned(workspace, alice)
    assert fresh.state == RunState.PLANNED, fresh.message
    assert fresh.config_sha256 == now and fresh.plan_summary == {
        "add": 4,
        "change": 0,
        "destroy": 0,
    }
    run_approve(run=fresh, user=bob)
    wait_state(fresh, RunState.APPLIED, RunState.FAILED)
    assert fresh.state == RunState.APPLIED, fresh.message
    assert state_resources(aws, workspace) == ["first", "second", "slow", "third"]


def test_variables_changed_after_the_plan_refuse_approval(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace(variables={"greeting": "hello"})
    run = planned(workspace, user("carol"))
    assert run.plan_inputs == {"variables": {"greeting": "hello"}, "secrets": {}}
    TerraformWorkspace.objects.filter(pk=workspace.pk).update(variables={"greeting": "hi"})

    with pytest.raises(RunError, match=r"other variables than the workspace has now \(greeting\)"):
        run_approve(run=run, user=user("dave"))
    assert TerraformRun.objects.get(pk=run.pk).state == RunState.PLANNED


def test_a_stored_plan_altered_after_planning_is_refused_and_nothing_is_applied(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    run = planned(workspace, user("erin"))
    assert run.state == RunState.PLANNED, run.message
    # Someone with access to the bucket swaps in another plan, valid for the same state, that
    # terraform itself would apply without a word.
    with outside_directory(workspace) as directory:
        subprocess.run(
            [
                settings.TERRAFORM_BIN,
                "plan",
                "-input=false",
                "-var=greeting=tampered",
                "-out=other.tfplan",
            ],
            cwd=directory,
            capture_output=True,
            check=True,
            timeout=120,
        )
        put(aws, run.plan_key, (directory / "other.tfplan").read_bytes())

    run_approve(run=run, user=user("frank"))
    wait_state(run, RunState.FAILED, RunState.APPLIED)
    assert run.state == RunState.FAILED
    assert run.message == PLAN_ALTERED_MESSAGE
    assert "missing or was altered" in run.message
    assert state_resources(aws, workspace) == [], "nothing was applied"
    plan_key = run.plan_key or remote.plan_key(workspace.name, run.pk)
    wait_until(
        lambda: not s3_objects(aws, plan_key),
        timeout=30,
        message="the altered plan to be removed",
    )


def test_a_configuration_bundle_altered_after_planning_is_refused(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    run = planned(workspace, user("grace"))
    assert run.state == RunState.PLANNED, run.message
    source = Path(settings.TERRAFORM_ROOT) / workspace.directory
    entries = configuration.collect(source)
    scripted = [
        configuration.Entry("hook.sh", b"#!/bin/sh\necho not what was planned\n", executable=True),
        *entries,
    ]
    put(aws, run.bundle_key, configuration.pack(sorted(scripted, key=lambda e: e.path)))

    run_approve(run=run, user=user("heidi"))
    wait_state(run, RunState.FAILED, RunState.APPLIED)
    assert (run.state, run.message) == (RunState.FAILED, BUNDLE_ALTERED_MESSAGE)
    assert state_resources(aws, workspace) == []
