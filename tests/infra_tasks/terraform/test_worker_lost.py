"""A worker killed mid-apply: the redelivered message must not start a second apply."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.services import WORKER_LOST, run_approve, run_request
from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.enqueue import Requester
from workers.selectors import job_log_since

pytestmark = pytest.mark.django_db(transaction=True)


def state_of(run: TerraformRun) -> str:
    run.refresh_from_db()
    return run.state


def test_worker_killed_mid_apply_fails_the_run_instead_of_applying_again(
    worker_env: dict[str, str],
    run_dir: Path,
    aws: AwsEndpoint,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    # Own queue with a short visibility timeout, so SQS redelivers within the test.
    prefix = new_queue_prefix()
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"{prefix}infra", Attributes={"VisibilityTimeout": "3"})[
        "QueueUrl"
    ]
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    bob = get_user_model().objects.create_user("bob", is_staff=True)
    workspace = make_workspace(variables={"sleep_seconds": 5})

    first = WorkerProcess(env=env, queues=["infra"], log_dir=run_dir)
    try:
        with publishing_to(prefix):
            run = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(lambda: state_of(run) == RunState.PLANNED, timeout=90, message="PLANNED")
        with publishing_to(prefix):
            run = run_approve(run=run, user=bob)
        wait_until(
            lambda: (
                "terraform_data.slow: (local-exec): slow step started"
                in job_log_since(task_id=run.apply_task_id).lines
            ),
            timeout=60,
            message="the apply to be under way",
        )
    finally:
        first.kill()
    assert state_of(run) == RunState.APPLYING

    second = WorkerProcess(env=env, queues=["infra"], log_dir=run_dir)
    try:
        wait_until(lambda: state_of(run) != RunState.APPLYING, timeout=90, message="an outcome")
    finally:
        second.stop()
    assert run.state == RunState.FAILED
    assert WORKER_LOST in run.message
    lines = job_log_since(task_id=run.apply_task_id, max_chunks=10_000).lines
    assert sum(1 for line in lines if line.startswith("-- plan and apply of")) == 1
    assert f"[{run.apply_task_id}]" in second.log_text(), "the message was delivered again"
    sqs.purge_queue(QueueUrl=queue_url)
