"""A terraform step's own worker meets trouble while terraform runs: the database goes away
mid-apply (a failover), or a cancel finds terraform deaf to SIGINT. Real worker over SQS,
real PostgreSQL, real terraform, state in the local endpoint's S3."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from infra_tasks.terraform import remote
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.services.runs import (
    run_approve,
    run_cancel,
    run_request,
    run_state_unlock,
)
from tests.infra_tasks.terraform.conftest import s3_objects
from tests.support.broker import publishing_to
from tests.support.database import database_down
from tests.support.servers import (
    AwsEndpoint,
    WorkerProcess,
    wait_until,
)
from workers.enqueue import Requester
from workers.selectors import job_log_since

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]

# Longer than many cancel checks and heartbeats (every 0.5 s and 1 s here), shorter than the
# apply's sleeping step.
OUTAGE_SECONDS = 4


@pytest.fixture
def infra_worker(
    worker_env: dict[str, str], run_dir: Path, prefix: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "TERRAFORM_WORK_DIR": str(tmp_path / "work"),
            "TERRAFORM_HEARTBEAT_SECONDS": "1",
            "TERRAFORM_CANCEL_GRACE_SECONDS": "2",
        },
        queues=["infra"],
        log_dir=run_dir,
        name=f"stopped-{prefix[1:-1]}",
    )
    yield worker
    worker.stop()


def state_of(run: TerraformRun) -> str:
    run.refresh_from_db()
    return run.state


def log_text(task_id: str) -> str:
    return "\n".join(job_log_since(task_id=task_id, max_chunks=10_000).lines)


def test_an_apply_rides_out_a_database_outage_and_ends_applied(
    infra_worker: WorkerProcess,
    prefix: str,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    # Before, the first cancel check or heartbeat that met the outage raised, and the step
    # SIGKILLed terraform mid-apply: the run ended failed, "stopped by an internal error",
    # with what it had created missing from the state and the lock left behind.
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    workspace = make_workspace(variables={"sleep_seconds": OUTAGE_SECONDS + 4})
    with publishing_to(prefix):
        run = run_request(
            workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
        )
    wait_until(
        lambda: state_of(run) in (RunState.PLANNED, RunState.FAILED),
        timeout=90,
        message="the plan",
    )
    assert run.state == RunState.PLANNED, run.message
    with publishing_to(prefix):
        run = run_approve(run=run, user=get_user_model().objects.create_user("bob"))
    wait_until(
        lambda: "slow step started" in log_text(run.apply_task_id),
        timeout=60,
        message="the slow step to start",
    )

    with database_down():
        time.sleep(OUTAGE_SECONDS)  # the outage itself: nothing to poll for

    wait_until(
        lambda: state_of(run) in (RunState.APPLIED, RunState.FAILED, RunState.LOST),
        timeout=90,
        message="the apply to end",
    )
    text = log_text(run.apply_task_id)
    assert run.state == RunState.APPLIED, (run.message, text[-2000:])
    assert "stopped by an error" not in text
    assert "terraform_data.slow: (local-exec): slow step done" in text


def test_a_plan_killed_after_its_cancel_grace_has_the_lock_it_left_shown_and_releasable(
    infra_worker: WorkerProcess,
    prefix: str,
    aws: AwsEndpoint,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    # Terraform waiting on a remote state that never answers does not stop on SIGINT within
    # the grace: it is SIGKILLed holding the state lock. The run ends cancelled, and the lock
    # must be looked for as for a lost run, or every later plan fails on it with no run
    # offering to release it.
    silent = socket.create_server(("127.0.0.1", 0))
    hang_url = f"http://127.0.0.1:{silent.getsockname()[1]}/state"
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    root = get_user_model().objects.create_superuser("root")
    workspace = make_workspace("hanging_plan", variables={"hang_url": hang_url})
    lock_key = remote.state_key(workspace.name) + remote.LOCK_SUFFIX
    try:
        with publishing_to(prefix):
            run = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(
            lambda: state_of(run) == RunState.PLANNING and s3_objects(aws, lock_key),
            timeout=90,
            message="the plan to hold the state lock",
        )
        run_cancel(run=run, user=alice)
        wait_until(
            lambda: state_of(run) in (RunState.CANCELLED, RunState.FAILED),
            timeout=60,
            message="the plan to be stopped",
        )
        assert run.state == RunState.CANCELLED, run.message
        assert "-- grace period over: SIGKILL --" in log_text(run.plan_task_id)
        wait_until(
            lambda: TerraformRun.objects.get(pk=run.pk).state_lock_checked_at,
            timeout=60,
            message="the state lock to be looked for",
        )
        run.refresh_from_db()
        left = json.loads(s3_objects(aws, lock_key)[lock_key])
        assert run.state_lock is not None and run.state_lock["ID"] == left["ID"]

        client = Client()
        client.force_login(root)
        page = client.get(reverse("admin:terraform_terraformrun_change", args=[run.pk]))
        html = page.content.decode()
        assert page.status_code == 200
        assert left["ID"] in html and 'id="run-force-unlock"' in html

        with publishing_to(prefix):
            run_state_unlock(run=run, user=root)
        wait_until(
            lambda: TerraformRun.objects.get(pk=run.pk).state_lock is None,
            timeout=60,
            message="the lock to be released",
        )
        assert lock_key not in s3_objects(aws, lock_key)
    finally:
        silent.close()
