"""Terraform runs end to end: real worker over SQS, real PostgreSQL, real terraform, state and
plans in the local endpoint's S3."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
from collections.abc import Callable
from email import message_from_bytes
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.core.management import call_command
from django.db import IntegrityError
from django.test import override_settings
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from infra_tasks.terraform import remote
from infra_tasks.terraform.cli import SENSITIVE_OUTPUT
from infra_tasks.terraform.jobs import DRIFT_SCHEDULE_NAME
from infra_tasks.terraform.models import (
    RunKind,
    RunState,
    SecretSource,
    TerraformRun,
    TerraformSecret,
    TerraformWorkspace,
)
from infra_tasks.terraform.services.runs import (
    RunError,
    drift_check_request_all,
    run_approve,
    run_cancel,
    run_discard,
    run_request,
)
from tests.infra_tasks.terraform.conftest import (
    outside_directory,
    processes_working_in,
    s3_objects,
    terraform_outside,
)
from tests.support.broker import publishing_to
from tests.support.monitoring import FlowerProcess, Monitored
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.enqueue import Requester
from workers.logsink import LineCapture
from workers.models import Job, JobLogChunk, RequesterKind
from workers.outbox import relay
from workers.recurring import recurring_task_run_now
from workers.selectors import job_log_since

pytestmark = pytest.mark.django_db(transaction=True)

MakeWorkspace = Callable[..., TerraformWorkspace]


def user(name: str) -> User:
    return get_user_model().objects.create_user(name, email=f"{name}@example.com", is_staff=True)


def plan(workspace: TerraformWorkspace, by: User) -> TerraformRun:
    return run_request(workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(by))


def wait_state(run: TerraformRun, *states: RunState, timeout: float = 90) -> TerraformRun:
    def reached() -> bool:
        run.refresh_from_db()
        return run.state in states

    wait_until(reached, timeout=timeout, message=f"run #{run.pk} to be {'/'.join(states)}")
    return run


def log_of(task_id: str) -> list[str]:
    return job_log_since(task_id=task_id, max_chunks=10_000).lines


def lock_object(aws: AwsEndpoint, workspace: TerraformWorkspace) -> bytes | None:
    key = remote.state_key(workspace.name) + remote.LOCK_SUFFIX
    return s3_objects(aws, key).get(key)


def job_ended(task_id: str, status: str) -> TaskResult:
    """The job's result once it reads `status` (the run is recorded before its task returns)."""
    wait_until(
        lambda: TaskResult.objects.filter(task_id=task_id, status=status).exists(),
        timeout=30,
        message=f"job {task_id} to end {status}",
    )
    return TaskResult.objects.get(task_id=task_id)


def test_plan_then_approval_applies_the_saved_plan_with_progress_and_outputs(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    alice, bob = user("alice"), user("bob")
    workspace = make_workspace(require_distinct_approver=True)
    state_key = remote.state_key(workspace.name)

    run = plan(workspace, alice)
    assert run.state == RunState.QUEUED and run.plan_task_id
    assert Job.objects.get(task_id=run.plan_task_id).queue == "infra"
    wait_state(run, RunState.PLANNED)
    assert run.plan_summary == {"add": 3, "change": 0, "destroy": 0}
    assert "Plan: 3 to add, 0 to change, 0 to destroy." in log_of(run.plan_task_id)
    # The plan and the configuration bundle are in the bucket, named and hashed on the run.
    stored = s3_objects(aws, f"{settings.TERRAFORM_PLAN_PREFIX}/{workspace.name}/")
    assert set(stored) == {run.plan_key, run.bundle_key}
    assert hashlib.sha256(stored[run.plan_key]).hexdigest() == run.plan_sha256
    assert hashlib.sha256(stored[run.bundle_key]).hexdigest() == run.bundle_sha256
    assert run.state_key == state_key and len(run.config_sha256) == 64
    assert run.plan_inputs == {"variables": {}, "secrets": {}}
    assert state_key not in s3_objects(aws, state_key), "a plan changes no state"
    # The structured plan, as the run page shows it: each resource and what it will get.
    assert run.plan_changes is not None
    resources = {r["address"]: r for r in run.plan_changes["resources"]}
    assert {address: r["action"] for address, r in resources.items()} == {
        "terraform_data.first": "create",
        "terraform_data.second": "create",
        "terraform_data.slow": "create",
    }
    first = {
        a["name"]: (a["before"], a["after"])
        for a in resources["terraform_data.first"]["attributes"]
    }
    assert first["input"] == (None, '"hello"')
    assert first["id"] == (None, "(known after apply)")
    assert {o["address"]: o["after"] for o in run.plan_changes["outputs"]} == {
        "output.greeting": "(known after apply)",
        "output.token": "(sensitive value)",
    }

    run_approve(run=run, user=bob)
    wait_state(run, RunState.APPLIED, RunState.FAILED)
    assert run.state == RunState.APPLIED, run.message
    assert (run.approved_by, run.requested_by) == (bob, alice)
    lines = log_of(run.apply_task_id)
    assert any(line.startswith("Apply complete! Resources: 3 added") for line in lines)
    assert not any(line.startswith("{") for line in lines), "events are shown as messages"
    job = Job.objects.get(task_id=run.apply_task_id)
    assert (job.progress_done, job.progress_total) == (3, 3)
    workspace.refresh_from_db()
    assert workspace.outputs == {"greeting": "hello", "token": SENSITIVE_OUTPUT}, (
        "sensitive outputs are stored by name only"
    )
    state = json.loads(s3_objects(aws, state_key)[state_key])
    assert {r["name"] for r in state["resources"]} == {"first", "second", "slow"}
    assert run.plan_key not in s3_objects(aws, run.plan_key), "an applied plan is removed"
    assert run.bundle_key in s3_objects(aws, run.bundle_key), "the bundle stays for the record"
    assert list(Path(settings.TERRAFORM_WORK_DIR).iterdir()) == [], "step directories go"
    assert job_ended(run.plan_task_id, "SUCCESS").result == '"planned"'
    assert job_ended(run.apply_task_id, "SUCCESS").result == '"applied"'


def test_plan_of_an_up_to_date_workspace_ends_as_no_changes(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace("empty")
    carol = user("carol")
    run = wait_state(plan(workspace, carol), RunState.NO_CHANGES, RunState.FAILED)
    assert run.state == RunState.NO_CHANGES, run.message
    assert run.message == "No changes: the infrastructure matches."
    assert run.plan_key == "" and run.finished_at is not None
    assert s3_objects(aws, f"{settings.TERRAFORM_PLAN_PREFIX}/{workspace.name}/") == {}

    # A destroy plan with nothing to destroy says so, not that "the infrastructure matches".
    destroy = run_request(
        workspace=workspace, kind=RunKind.DESTROY, requester=Requester.for_user(carol)
    )
    destroy = wait_state(destroy, RunState.NO_CHANGES, RunState.FAILED)
    assert destroy.message == "Nothing to destroy: the workspace manages no resources."


def test_a_stale_plan_is_refused_and_nothing_is_applied(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    run = wait_state(plan(workspace, user("dave")), RunState.PLANNED)
    # Someone applies by hand after the plan was made: the saved plan no longer fits.
    terraform_outside(workspace, "apply", "-auto-approve", "-input=false", "-var=greeting=by-hand")

    run_approve(run=run, user=user("erin"))
    wait_state(run, RunState.FAILED, RunState.APPLIED)
    assert run.state == RunState.FAILED
    assert "stale" in run.message and "queue a new plan" in run.message
    assert "Error: Saved plan is stale" in log_of(run.apply_task_id)
    # The apply failed, and its job says so; the plan step itself went well.
    assert "queue a new plan" in job_ended(run.apply_task_id, "FAILURE").result
    assert job_ended(run.plan_task_id, "SUCCESS").result == '"planned"'
    outputs = json.loads(terraform_outside(workspace, "output", "-json"))
    assert outputs["greeting"]["value"] == "by-hand"


def test_runs_of_one_workspace_wait_in_fifo_order(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    frank = user("frank")
    workspace = make_workspace()
    first, second, third = plan(workspace, frank), plan(workspace, frank), plan(workspace, frank)
    assert (second.state, third.state) == (RunState.WAITING, RunState.WAITING)
    assert second.plan_task_id == ""

    wait_state(first, RunState.PLANNED)
    second.refresh_from_db()
    assert second.state == RunState.WAITING, "a plan awaiting approval holds the workspace"

    run_discard(run=first, user=frank)
    wait_state(second, RunState.PLANNED)
    third.refresh_from_db()
    assert third.state == RunState.WAITING
    first.refresh_from_db()
    assert first.state == RunState.DISCARDED
    assert second.started_at is not None and first.finished_at is not None
    assert second.started_at >= first.finished_at

    run_cancel(run=third, user=frank)
    third.refresh_from_db()
    assert third.state == RunState.CANCELLED and third.cancel_requested_by == frank


def test_the_database_refuses_a_second_active_run(make_workspace: MakeWorkspace) -> None:
    workspace = make_workspace()
    common = {"workspace": workspace, "kind": RunKind.APPLY, "requester_kind": "cli"}
    TerraformRun.objects.create(state=RunState.PLANNING, requester_label="a", **common)
    with pytest.raises(IntegrityError):
        TerraformRun.objects.create(state=RunState.QUEUED, requester_label="b", **common)


def test_cancel_mid_apply_interrupts_terraform_releases_the_lock_and_a_new_plan_works(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    grace = user("grace")
    workspace = make_workspace(variables={"sleep_seconds": 5})
    run = wait_state(plan(workspace, grace), RunState.PLANNED)
    run = run_approve(run=run, user=user("heidi"))
    wait_until(
        lambda: "terraform_data.slow: (local-exec): slow step started" in log_of(run.apply_task_id),
        timeout=60,
        message="the slow step to start",
    )

    run_cancel(run=run, user=grace)
    wait_state(run, RunState.CANCELLED, RunState.APPLIED, RunState.FAILED, timeout=60)
    assert run.state == RunState.CANCELLED, run.message
    assert run.cancel_requested_by == grace and run.cancel_requested_at is not None
    assert "sending SIGINT" in "\n".join(log_of(run.apply_task_id))
    assert "terraform_data.slow: (local-exec): slow step done" not in log_of(run.apply_task_id)
    assert lock_object(aws, workspace) is None
    # A cancelled apply's job reads cancelled (REVOKED), never SUCCESS.
    revoked = job_ended(run.apply_task_id, "REVOKED")
    assert "Cancelled by grace" in revoked.result and revoked.worker

    # The interrupted resource is planned again; the state is usable, not locked.
    workspace.variables = {"sleep_seconds": 0}
    workspace.save()
    again = wait_state(plan(workspace, grace), RunState.PLANNED, RunState.FAILED)
    assert again.state == RunState.PLANNED, again.message
    assert again.plan_summary is not None and again.plan_summary["add"] >= 1


def test_flower_reads_a_cancelled_apply_as_revoked_not_as_still_started(
    monitored: Monitored,
    flower: FlowerProcess,
    make_workspace: MakeWorkspace,
) -> None:
    """A cancelled apply ends through workers.outcomes (REVOKED stored by hand, then
    Celery's Ignore, after which Celery sends no event): Flower showed it STARTED, with a
    Terminate button, for good. Run by a worker on the monitoring channel."""
    workspace = make_workspace(variables={"sleep_seconds": 5})
    with publishing_to(monitored.prefix):
        run = plan(workspace, user("lena"))
    run = wait_state(run, RunState.PLANNED, RunState.FAILED)
    assert run.state == RunState.PLANNED, run.message
    with publishing_to(monitored.prefix):
        run = run_approve(run=run, user=user("mona"))
    wait_until(
        lambda: "terraform_data.slow: (local-exec): slow step started" in log_of(run.apply_task_id),
        timeout=60,
        message="the slow step to start",
    )
    run_cancel(run=run, user=user("nina"))
    wait_state(run, RunState.CANCELLED, RunState.APPLIED, RunState.FAILED, timeout=60)
    assert run.state == RunState.CANCELLED, run.message

    wait_until(
        lambda: flower.get("/api/tasks").get(run.apply_task_id, {}).get("state") == "REVOKED",
        timeout=30,
        message="Flower to see the apply cancelled",
    )
    assert flower.get(f"/api/task/info/{run.apply_task_id}")["worker"] == (
        monitored.worker.hostname
    )
    assert run.apply_task_id not in flower.get("/api/tasks?state=STARTED")


def test_cancel_of_an_apply_whose_local_exec_ignores_sigint_leaves_no_process_behind(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace("stubborn")
    run = wait_state(plan(workspace, user("ines")), RunState.PLANNED, RunState.FAILED)
    assert run.state == RunState.PLANNED, run.message
    run = run_approve(run=run, user=user("jack"))
    wait_until(
        lambda: (
            "terraform_data.stubborn: (local-exec): stubborn step started"
            in log_of(run.apply_task_id)
        ),
        timeout=60,
        message="the stubborn step to start",
    )
    step = f"{settings.TERRAFORM_WORK_DIR}/run-{run.pk}-apply-"
    tree = processes_working_in(step)
    assert list(tree.values()).count("sleep") == 2 and "terraform" in tree.values(), tree

    run_cancel(run=run, user=user("kim"))
    wait_state(run, RunState.CANCELLED, RunState.FAILED, RunState.APPLIED, timeout=60)
    assert run.state == RunState.CANCELLED, run.message
    # Terraform stopped on SIGINT; the sleeps ignoring it were SIGKILLed with the group.
    wait_until(
        lambda: not (set(tree) & set(processes_working_in(step))),
        timeout=10,
        message=f"every process of the apply {tree} to end",
    )
    assert lock_object(aws, workspace) is None


def test_time_limit_stops_an_apply_the_same_way(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace(variables={"sleep_seconds": 5})
    run = wait_state(plan(workspace, user("ivan")), RunState.PLANNED)
    # Set after planning, so only the apply (with its 5 s step) can reach the limit.
    TerraformWorkspace.objects.filter(pk=workspace.pk).update(run_time_limit_seconds=2)

    run_approve(run=run, user=user("judy"))
    wait_state(run, RunState.FAILED, RunState.APPLIED, RunState.CANCELLED, timeout=60)
    assert run.state == RunState.FAILED
    assert run.message == "Time limit of 2 s reached; terraform was stopped."
    assert "-- timed out: sending SIGINT, SIGKILL in 5s --" in log_of(run.apply_task_id)
    assert lock_object(aws, workspace) is None


def test_secret_values_are_resolved_in_the_worker_and_never_stored(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    secret = "tok-5f2a9c81e7-very-secret"
    aws.client("ssm").put_parameter(
        Name="/opsqueue/terraform/test/api-token", Value=secret, Type="SecureString", Overwrite=True
    )
    workspace = make_workspace()
    TerraformSecret.objects.create(
        workspace=workspace,
        variable="api_token",
        source=SecretSource.SSM,
        reference="/opsqueue/terraform/test/api-token",
    )
    run = wait_state(plan(workspace, user("mallory")), RunState.PLANNED, RunState.FAILED)
    assert run.state == RunState.PLANNED, run.message
    run_approve(run=run, user=user("oscar"))
    wait_state(run, RunState.APPLIED, RunState.FAILED)
    assert run.state == RunState.APPLIED, run.message

    lines = log_of(run.apply_task_id)
    assert "terraform_data.slow: (local-exec): token in use: [REDACTED]" in lines
    assert any("aws_secret_access_key=[REDACTED]" in line for line in lines)
    stored = " ".join(JobLogChunk.objects.values_list("text", flat=True))
    assert secret not in stored and "wJalrXUtnFEMI/K7MDENG" not in stored
    task_rows = json.dumps(
        list(
            TerraformRun.objects.filter(pk=run.pk).values()  # the run row itself
        ),
        default=str,
    )
    assert secret not in task_rows


def test_secrets_manager_reference_is_resolved_too(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    secret = "sm-91c3e0d7b2-also-secret"
    aws.client("secretsmanager").create_secret(
        Name="opsqueue/terraform/test-token", SecretString=secret
    )
    workspace = make_workspace()
    TerraformSecret.objects.create(
        workspace=workspace,
        variable="api_token",
        source=SecretSource.SECRETS_MANAGER,
        reference="opsqueue/terraform/test-token",
    )
    run = wait_state(plan(workspace, user("peggy")), RunState.PLANNED, RunState.FAILED)
    assert run.state == RunState.PLANNED, run.message


def test_a_secret_variable_name_saved_before_names_were_checked_fails_the_run_clearly(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    TerraformSecret.objects.create(
        workspace=workspace,
        variable="a=b",
        source=SecretSource.SSM,
        reference="/opsqueue/terraform/anything",
    )
    run = wait_state(plan(workspace, user("quentin")), RunState.FAILED, RunState.PLANNED)
    assert run.state == RunState.FAILED
    assert run.message == "Not terraform variable names: 'a=b'."


def test_a_missing_secret_fails_the_run_naming_the_reference(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    TerraformSecret.objects.create(
        workspace=workspace,
        variable="api_token",
        source=SecretSource.SSM,
        reference="/opsqueue/terraform/nope",
    )
    run = wait_state(plan(workspace, user("rupert")), RunState.FAILED, RunState.PLANNED)
    assert run.state == RunState.FAILED
    assert "'/opsqueue/terraform/nope'" in run.message and "ParameterNotFound" in run.message
    assert "'/opsqueue/terraform/nope'" in job_ended(run.plan_task_id, "FAILURE").result


def test_a_drift_check_started_with_run_now_is_asked_by_who_pressed_it(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    """The schedule's Run now starts the checks on someone's behalf: each run (and its plan
    job) names them, as the job that queued them does, not the schedule."""
    workspace = make_workspace()
    olga = get_user_model().objects.create_superuser("olga")
    schedule = PeriodicTask.objects.get(name=DRIFT_SCHEDULE_NAME)

    task_id = recurring_task_run_now(periodic_task_id=schedule.pk, user=olga)

    wait_until(lambda: workspace.runs.exists(), timeout=60, message="the drift check's run")
    check = workspace.runs.get()
    assert (check.kind, check.requester_kind, check.requested_by) == (
        RunKind.DRIFT_CHECK,
        RequesterKind.USER,
        olga,
    )
    assert Job.objects.get(task_id=task_id).requested_by == olga
    wait_state(check, RunState.NO_CHANGES, RunState.DRIFTED, RunState.FAILED)
    assert Job.objects.get(task_id=check.plan_task_id).requested_by == olga
    # Its job's log says what it queued, workspace by workspace.
    assert f"{workspace}: drift check queued (run #{check.pk})" in log_of(task_id)


def test_drift_check_flags_a_change_made_outside_terraform_and_emails_staff(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    sybil = user("sybil")
    workspace = make_workspace()
    workspace.notify.add(sybil)
    applied = wait_state(plan(workspace, sybil), RunState.PLANNED)
    run_approve(run=applied, user=user("trent"))
    wait_state(applied, RunState.APPLIED, RunState.FAILED)

    # In step with its configuration: the scheduled check finds nothing.
    assert drift_check_request_all(requester=Requester.schedule(DRIFT_SCHEDULE_NAME)) >= 1
    check = workspace.runs.filter(kind=RunKind.DRIFT_CHECK).get()
    wait_state(check, RunState.NO_CHANGES, RunState.DRIFTED, RunState.FAILED)
    assert check.state == RunState.NO_CHANGES, check.message
    assert check.requester_label == DRIFT_SCHEDULE_NAME

    terraform_outside(
        workspace, "apply", "-auto-approve", "-input=false", "-var=greeting=changed-by-hand"
    )
    drift_check_request_all(requester=Requester.schedule(DRIFT_SCHEDULE_NAME))
    check = workspace.runs.filter(kind=RunKind.DRIFT_CHECK).latest("id")
    wait_state(check, RunState.DRIFTED, RunState.NO_CHANGES, RunState.FAILED)
    assert check.state == RunState.DRIFTED, check.message
    assert check.plan_summary == {"add": 0, "change": 3, "destroy": 0}
    workspace.refresh_from_db()
    assert workspace.drifted and workspace.drift_checked_at is not None

    def mail_to_sybil() -> list[bytes]:
        return [
            f.read_bytes()
            for f in Path(settings.EMAIL_FILE_PATH).glob("*.log")
            if workspace.name.encode() in f.read_bytes()
        ]

    sent = wait_until(mail_to_sybil, timeout=30, message="the drift e-mail")
    assert isinstance(sent, list)
    message = message_from_bytes(sent[0])
    assert message["To"] == "sybil@example.com"
    assert message["Subject"] == f"[opsqueue] Terraform drift in {workspace.name}"


def test_a_workspace_destroyed_on_purpose_is_not_checked_for_drift_until_it_is_applied_again(
    worker: WorkerProcess, make_workspace: MakeWorkspace
) -> None:
    """Its drift check found everything missing and e-mailed staff about it every night."""
    uma = user("uma")
    workspace = make_workspace()
    applied = wait_state(plan(workspace, uma), RunState.PLANNED)
    run_approve(run=applied, user=uma)
    wait_state(applied, RunState.APPLIED, RunState.FAILED)

    destroy = run_request(
        workspace=workspace, kind=RunKind.DESTROY, requester=Requester.for_user(uma)
    )
    wait_state(destroy, RunState.PLANNED)
    # A check requested meanwhile waits behind the destroy, and runs once it is applied.
    waiting_check = run_request(
        workspace=workspace, kind=RunKind.DRIFT_CHECK, requester=Requester.for_user(uma)
    )
    assert waiting_check.state == RunState.WAITING
    run_approve(run=destroy, user=uma)
    wait_state(destroy, RunState.APPLIED, RunState.FAILED)
    assert destroy.state == RunState.APPLIED, destroy.message
    wait_state(waiting_check, RunState.DISCARDED, RunState.DRIFTED, RunState.FAILED)
    assert waiting_check.state == RunState.DISCARDED, waiting_check.message
    assert waiting_check.message.startswith("Not drift: a destroy was applied")
    workspace.refresh_from_db()
    assert workspace.destroyed_at is not None and not workspace.drifted

    # The nightly check leaves it out; asked for by hand, the check is refused, saying why.
    checks = workspace.runs.filter(kind=RunKind.DRIFT_CHECK)
    log = LineCapture()
    drift_check_request_all(requester=Requester.schedule(DRIFT_SCHEDULE_NAME), log=log)
    assert checks.count() == 1
    # Its job says so: it read only "0" and "The job wrote no log lines."
    assert f"{workspace}: not checked. Workspace {workspace} was destroyed on purpose" in log.text
    assert log.lines[-1] == "No drift check was queued."
    with pytest.raises(RunError, match="was destroyed on purpose"):
        run_request(
            workspace=workspace, kind=RunKind.DRIFT_CHECK, requester=Requester.for_user(uma)
        )

    # Brought back by a plan and its apply, it is checked again.
    back = wait_state(plan(workspace, uma), RunState.PLANNED)
    assert (back.plan_summary or {}).get("add", 0) > 0
    run_approve(run=back, user=uma)
    wait_state(back, RunState.APPLIED, RunState.FAILED)
    workspace.refresh_from_db()
    assert workspace.destroyed_at is None
    drift_check_request_all(requester=Requester.schedule(DRIFT_SCHEDULE_NAME))
    check = checks.latest("id")
    wait_state(check, RunState.NO_CHANGES, RunState.DRIFTED, RunState.FAILED)
    assert check.state == RunState.NO_CHANGES, check.message


def test_a_plan_overlapping_another_terraform_on_the_same_state_gets_the_lock_error(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    # Someone applies by hand with a slow step, against the same state in the bucket:
    # terraform holds the S3 lock file meanwhile.
    with outside_directory(workspace) as directory:
        outside = subprocess.Popen(
            [
                settings.TERRAFORM_BIN,
                "apply",
                "-auto-approve",
                "-input=false",
                "-var=sleep_seconds=8",
            ],
            cwd=directory,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(
                lambda: lock_object(aws, workspace), timeout=30, message="the lock to be taken"
            )
            run = wait_state(plan(workspace, user("victor")), RunState.FAILED, RunState.PLANNED)
        finally:
            outside.wait(timeout=60)
    assert run.state == RunState.FAILED
    assert "Error acquiring the state lock" in run.message
    assert outside.returncode == 0, "the apply holding the lock was not disturbed"
    assert lock_object(aws, workspace) is None


def test_a_workspace_directory_missing_on_the_worker_fails_the_run_clearly(
    worker: WorkerProcess,
) -> None:
    workspace = TerraformWorkspace.objects.create(name="nowhere", directory="not-there")
    run = wait_state(plan(workspace, user("walter")), RunState.FAILED, RunState.PLANNED)
    assert run.message == "'not-there' does not exist under TERRAFORM_ROOT on this worker."
    assert not workspace.runs.filter(state__in=[RunState.QUEUED, RunState.PLANNING]).exists()


def test_a_run_whose_message_was_lost_with_its_queue_ends_failed_and_frees_the_workspace(
    endpoint: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    """An SQS endpoint restarted empty (or a queue deleted and made again) loses the queued
    plan's message. Its job ended Failed (MessageLost), but the run read "Queued" for good,
    holding the workspace: every later plan and drift check waited behind it."""
    from workers.lost_messages import jobs_lost_with_their_queue_record
    from workers.queue_depths import queue_depths_record

    gina = user("gina")
    workspace = make_workspace()
    prefix = new_queue_prefix()
    with (
        publishing_to(prefix, endpoint_url=endpoint.url),
        override_settings(SQS_QUEUE_PREFIX=prefix),
    ):
        call_command("sqs_queues", stdout=io.StringIO())
        lost = plan(workspace, gina)
        relay.drain(timeout=30)
        assert Job.objects.get(task_id=lost.plan_task_id).sent_at is not None
        # SQS dates a queue in whole seconds; the check allows for two of clock skew.
        time.sleep(3.5)
        endpoint.halt()
        endpoint.start()  # in memory: it comes back with no queues and no messages
        call_command("sqs_queues", stdout=io.StringIO())  # what the operator runs

        jobs_lost_with_their_queue_record(depths=queue_depths_record())

        assert TaskResult.objects.get(task_id=lost.plan_task_id).status == "FAILURE"
        lost.refresh_from_db()
        assert lost.state == RunState.FAILED, lost.message
        assert lost.finished_at is not None
        assert lost.message.startswith("Its plan job never started: its message was lost")
        assert lost.message.endswith("Nothing ran; plan again.")
        # The workspace is free: the next plan is sent, not left waiting behind it.
        again = plan(workspace, gina)
        assert again.state == RunState.QUEUED and again.plan_task_id
