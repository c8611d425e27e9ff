"""A worker SIGKILLed mid-apply: terraform goes with it, the lost-run check (a real beat and
worker) marks the run lost within minutes and starts the next run, the redelivered message
does nothing, and the state lock left behind is shown and released by a force-unlock job.
A worker SIGKILLed mid-plan leaves the lock too; it is found and released the same way."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from infra_tasks.terraform import remote
from infra_tasks.terraform.jobs import LOST_RUNS_SCHEDULE_NAME
from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.services import runs
from infra_tasks.terraform.services.execution import run_plan_execute
from infra_tasks.terraform.services.runs import (
    WORKER_LOST,
    run_approve,
    run_request,
    run_state_unlock,
)
from tests.infra_tasks.terraform.conftest import processes_working_in, s3_objects
from tests.support.broker import publishing_to
from tests.support.servers import (
    AwsEndpoint,
    BeatProcess,
    WorkerProcess,
    new_queue_prefix,
    short_visibility_queue,
    wait_until,
)
from tests.workers.test_monitoring import sqs_queues_named
from workers.enqueue import Requester
from workers.periodic import periodic_jobs_sync
from workers.selectors import job_log_since

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]

LOST_AFTER_SECONDS = 10
BEAT_INTERVAL_SECONDS = 1


def state_of(run: TerraformRun) -> str:
    run.refresh_from_db()
    return run.state


def lost_run_check_every_second() -> None:
    """The declared schedule (flushed by earlier tests: made again), at a test's pace, and
    nothing else scheduled."""
    periodic_jobs_sync()
    every, _ = IntervalSchedule.objects.get_or_create(
        every=BEAT_INTERVAL_SECONDS, period=IntervalSchedule.SECONDS
    )
    PeriodicTask.objects.filter(name=LOST_RUNS_SCHEDULE_NAME).update(interval=every)
    PeriodicTask.objects.exclude(name=LOST_RUNS_SCHEDULE_NAME).update(enabled=False)


def test_a_worker_killed_mid_apply_takes_terraform_along_and_the_run_is_marked_lost(
    worker_env: dict[str, str],
    run_dir: Path,
    aws: AwsEndpoint,
    tmp_path: Path,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    # Own queues. SQS redelivers the killed worker's apply after a visibility timeout that is
    # well past the lost-run check, so the check, not the redelivery, has to notice.
    prefix = new_queue_prefix()
    env = {
        **worker_env,
        "SQS_QUEUE_PREFIX": prefix,
        "TERRAFORM_LOST_AFTER_SECONDS": str(LOST_AFTER_SECONDS),
    }
    sqs = aws.client("sqs")
    urls = [
        sqs.create_queue(QueueName=f"{prefix}infra", Attributes={"VisibilityTimeout": "60"})[
            "QueueUrl"
        ],
        sqs.create_queue(QueueName=f"{prefix}default")["QueueUrl"],
    ]
    lost_run_check_every_second()
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    bob = get_user_model().objects.create_user("bob", is_staff=True)
    workspace = make_workspace(variables={"sleep_seconds": 120})

    # Two infra workers, each with its own disk, and beat.
    workers = {
        name: WorkerProcess(
            env={**env, "TERRAFORM_WORK_DIR": str(tmp_path / name)},
            queues=["infra", "default"],
            log_dir=run_dir,
            name=f"{name}-{prefix[1:-1]}",
        )
        for name in ("one", "two")
    }
    beat = BeatProcess(env=env, log_dir=run_dir)
    try:
        with publishing_to(prefix):
            run = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(lambda: state_of(run) == RunState.PLANNED, timeout=90, message="PLANNED")
        with publishing_to(prefix):
            run = run_approve(run=run, user=bob)
            waiting = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(
            lambda: (
                "terraform_data.slow: (local-exec): slow step started"
                in job_log_since(task_id=run.apply_task_id).lines
            ),
            timeout=60,
            message="the apply to be under way",
        )
        run.refresh_from_db()
        (victim_name,) = [n for n, w in workers.items() if w.hostname == run.worker]
        (survivor,) = [w for n, w in workers.items() if n != victim_name]
        victim_dir = tmp_path / victim_name
        tree = processes_working_in(f"{victim_dir}/run-{run.pk}-apply-")
        assert "terraform" in tree.values() and "sleep" in tree.values(), tree

        workers[victim_name].kill()
        # Terraform and its local-exec child die with the worker (checked by pid).
        wait_until(
            lambda: not (set(tree) & set(processes_working_in(str(victim_dir)))),
            timeout=30,
            message=f"the apply's processes {tree} to end",
        )
        assert state_of(run) == RunState.APPLYING and waiting.state == RunState.WAITING

        wait_until(
            lambda: state_of(run) != RunState.APPLYING,
            timeout=LOST_AFTER_SECONDS + BEAT_INTERVAL_SECONDS + 30,
            message="the lost-run check to mark the run",
        )
        assert run.state == RunState.LOST and WORKER_LOST in run.message
        assert f"[{run.apply_task_id}]" not in survivor.log_text(), "marked before redelivery"

        # The workspace is free: the next run starts (and meets the lock left behind).
        wait_until(
            lambda: state_of(waiting) not in (RunState.WAITING, RunState.QUEUED),
            timeout=60,
            message="the next run to start",
        )
        assert run.finished_at is not None and waiting.started_at is not None
        assert waiting.started_at >= run.finished_at

        # The lock the killed terraform left is found and shown on the run.
        wait_until(
            lambda: TerraformRun.objects.get(pk=run.pk).state_lock_checked_at,
            timeout=60,
            message="the state lock to be looked for",
        )
        run.refresh_from_db()
        lock_key = remote.state_key(workspace.name) + remote.LOCK_SUFFIX
        left = json.loads(s3_objects(aws, lock_key)[lock_key])
        assert run.state_lock is not None and run.state_lock["ID"] == left["ID"]
        assert run.state_lock["Operation"] == "OperationTypeApply"

        # SQS delivers the apply again: it does nothing, the run stays lost.
        wait_until(
            lambda: f"[{run.apply_task_id}]" in survivor.log_text(),
            timeout=120,
            message="the apply message to come again",
        )
        # It ends its job as the run ended: failed, saying the worker was lost.
        wait_until(
            lambda: f"[{run.apply_task_id}] ignored" in survivor.log_text(),
            timeout=60,
            message="the redelivered apply to end",
        )
        assert state_of(run) == RunState.LOST
        result = TaskResult.objects.get(task_id=run.apply_task_id)
        assert result.status == "FAILURE"
        assert WORKER_LOST in json.loads(result.result)["exc_message"][0]
        apply_lines = job_log_since(task_id=run.apply_task_id, max_chunks=10_000).lines
        assert sum(1 for line in apply_lines if line.startswith("-- plan and apply of")) == 1

        # Released by an audited job; then a plan goes through.
        admin = get_user_model().objects.create_superuser("root")
        wait_until(lambda: state_of(waiting) in (RunState.FAILED, RunState.PLANNED), timeout=60)
        with publishing_to(prefix):
            run_state_unlock(run=run, user=admin)
        wait_until(
            lambda: TerraformRun.objects.get(pk=run.pk).state_lock is None,
            timeout=60,
            message="the lock to be released",
        )
        assert lock_key not in s3_objects(aws, lock_key)
        with publishing_to(prefix):
            again = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(
            lambda: state_of(again) in (RunState.PLANNED, RunState.FAILED),
            timeout=90,
            message="a plan after the unlock",
        )
        assert again.state == RunState.PLANNED, again.message
    finally:
        for worker in workers.values():
            worker.stop()
        beat.stop()
        for url in urls:
            sqs.purge_queue(QueueUrl=url)


def test_a_worker_killed_mid_plan_has_the_state_lock_it_left_shown_and_releasable(
    worker_env: dict[str, str],
    run_dir: Path,
    aws: AwsEndpoint,
    tmp_path: Path,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    # A plan holds the state lock as an apply does. Killed mid-plan, its run is marked lost
    # (here by calling the lost-run check, which the test above drives with a real beat);
    # the lock it left must be looked for and shown, or every later plan of the workspace
    # fails on it with no run offering to release it.
    prefix = new_queue_prefix()
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    sqs = aws.client("sqs")
    url = sqs.create_queue(QueueName=f"{prefix}infra", Attributes={"VisibilityTimeout": "60"})[
        "QueueUrl"
    ]
    # A server that takes terraform's connection and never answers: the plan hangs there.
    silent = socket.create_server(("127.0.0.1", 0))
    hang_url = f"http://127.0.0.1:{silent.getsockname()[1]}/state"
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    workspace = make_workspace("hanging_plan", variables={"hang_url": hang_url})
    lock_key = remote.state_key(workspace.name) + remote.LOCK_SUFFIX

    def worker(name: str) -> WorkerProcess:
        return WorkerProcess(
            env={**env, "TERRAFORM_WORK_DIR": str(tmp_path / name)},
            queues=["infra"],
            log_dir=run_dir,
            name=f"{name}-{prefix[1:-1]}",
        )

    victim = worker("victim")
    survivor: WorkerProcess | None = None
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
        victim.kill()
        survivor = worker("survivor")

        wait_until(
            lambda: (
                TerraformRun.objects.get(pk=run.pk).heartbeat_at is not None
                and runs.silent_seconds(TerraformRun.objects.get(pk=run.pk)) >= runs.lost_after()
            ),
            timeout=60,
            message="the run's heartbeat to go silent",
        )
        with publishing_to(prefix):
            assert runs.runs_mark_lost() == 1
        assert state_of(run) == RunState.LOST and WORKER_LOST in run.message
        wait_until(
            lambda: TerraformRun.objects.get(pk=run.pk).state_lock_checked_at,
            timeout=60,
            message="the state lock to be looked for",
        )
        run.refresh_from_db()
        left = json.loads(s3_objects(aws, lock_key)[lock_key])
        assert run.state_lock is not None and run.state_lock["ID"] == left["ID"]
        assert run.state_lock["Operation"] == "OperationTypePlan"

        admin = get_user_model().objects.create_superuser("root")
        with publishing_to(prefix):
            run_state_unlock(run=run, user=admin)
        wait_until(
            lambda: TerraformRun.objects.get(pk=run.pk).state_lock is None,
            timeout=60,
            message="the lock to be released",
        )
        assert lock_key not in s3_objects(aws, lock_key)
        run.refresh_from_db()
        wait_until(
            lambda: TaskResult.objects.get(task_id=run.unlock_task_id).status == "SUCCESS",
            timeout=30,
            message="the unlock job to end",
        )
        unlock_lines = job_log_since(task_id=run.unlock_task_id).lines
        assert "Terraform state has been successfully unlocked!" in unlock_lines
        assert not any("\x1b" in line for line in unlock_lines), "no colour codes in its log"
        TerraformWorkspace.objects.filter(pk=workspace.pk).update(variables={})
        with publishing_to(prefix):
            again = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(
            lambda: state_of(again) in (RunState.PLANNED, RunState.FAILED),
            timeout=90,
            message="a plan after the unlock",
        )
        assert again.state == RunState.PLANNED, again.message
    finally:
        silent.close()
        victim.kill()
        if survivor is not None:
            survivor.stop()
        sqs.purge_queue(QueueUrl=url)


class WorkerKilled(BaseException):
    """The worker dying on the spot: no handler in the code under test catches it."""


def test_a_plan_stored_by_a_worker_killed_before_recording_it_is_removed_by_the_next_plan(
    aws: AwsEndpoint,
    sqs_queues: AwsEndpoint,
    make_workspace: Callable[..., TerraformWorkspace],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A saved plan holds the run's variable values: a worker killed right after uploading
    it, before the run records it, must not leave it in the bucket for good."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)  # queues no worker reads: this test runs the plans itself
    workspace = make_workspace()
    requester = Requester.system("test")
    put = remote.object_put

    def put_then_die(key: str, body: bytes) -> None:
        put(key, body)
        if key.endswith(".tfplan"):
            raise WorkerKilled

    with publishing_to(prefix):
        killed = run_request(workspace=workspace, kind=RunKind.APPLY, requester=requester)
        monkeypatch.setattr(remote, "object_put", put_then_die)
        with pytest.raises(WorkerKilled):
            run_plan_execute(run_id=killed.pk, task_id=killed.plan_task_id, worker="killed")
        monkeypatch.undo()
        orphan = remote.plan_key(workspace.name, killed.pk)
        assert orphan in s3_objects(aws, orphan)
        killed.refresh_from_db()
        assert killed.state == RunState.PLANNING  # what the lost-run check then finds
        with transaction.atomic():
            runs.run_mark_lost(runs.run_lock(killed))

        again = run_request(workspace=workspace, kind=RunKind.APPLY, requester=requester)
        run_plan_execute(run_id=again.pk, task_id=again.plan_task_id, worker="next")

    again.refresh_from_db()
    assert again.state == RunState.PLANNED, again.message
    stored = s3_objects(aws, f"{settings.TERRAFORM_PLAN_PREFIX}/{workspace.name}/")
    assert orphan not in stored
    assert again.plan_key in stored


def test_an_apply_whose_worker_died_comes_back_before_the_lost_check_and_ends_it_failed(
    worker_env: dict[str, str],
    run_dir: Path,
    aws: AwsEndpoint,
    tmp_path: Path,
    make_workspace: Callable[..., TerraformWorkspace],
) -> None:
    """As in production, SQS delivers a dead worker's apply again (one visibility timeout)
    before the lost-run check would call its run lost (TERRAFORM_LOST_AFTER_SECONDS, left
    at its default here, with no beat). The delivery finds the job's claim lapsed, not
    released: its holder died mid-apply. The run is marked lost there and then, and its job
    fails saying so; it neither applies again nor ends SUCCESS while the run reads
    "applying"."""
    queue = short_visibility_queue(aws, worker_env, seconds=5)
    alice = get_user_model().objects.create_user("alice", is_staff=True)
    bob = get_user_model().objects.create_user("bob", is_staff=True)
    workspace = make_workspace(variables={"sleep_seconds": 120})
    workers = {
        name: WorkerProcess(
            env={**queue.env, "TERRAFORM_WORK_DIR": str(tmp_path / name)},
            queues=["infra"],
            log_dir=run_dir,
            name=f"{name}-{queue.prefix[1:-1]}",
        )
        for name in ("one", "two")
    }
    try:
        with publishing_to(queue.prefix):
            run = run_request(
                workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(alice)
            )
        wait_until(lambda: state_of(run) == RunState.PLANNED, timeout=90, message="PLANNED")
        with publishing_to(queue.prefix):
            run = run_approve(run=run, user=bob)
        wait_until(
            lambda: (
                "terraform_data.slow: (local-exec): slow step started"
                in job_log_since(task_id=run.apply_task_id).lines
            ),
            timeout=60,
            message="the apply to be under way",
        )
        run.refresh_from_db()
        (victim,) = [w for w in workers.values() if w.hostname == run.worker]
        (survivor,) = [w for w in workers.values() if w is not victim]
        victim.kill()

        wait_until(
            lambda: f"[{run.apply_task_id}]" in survivor.log_text(),
            timeout=30,
            message="the apply to be delivered again",
        )
        wait_until(
            lambda: state_of(run) != RunState.APPLYING,
            timeout=30,
            message="the delivery to end the run",
        )
        assert run.state == RunState.LOST and WORKER_LOST in run.message
        wait_until(
            lambda: TaskResult.objects.filter(
                task_id=run.apply_task_id, status__in=("SUCCESS", "FAILURE")
            ).exists(),
            timeout=30,
            message="the apply's job to end",
        )
        result = TaskResult.objects.get(task_id=run.apply_task_id)
        assert result.status == "FAILURE", result.result
        assert WORKER_LOST in json.loads(result.result)["exc_message"][0]
        apply_lines = job_log_since(task_id=run.apply_task_id, max_chunks=10_000).lines
        assert sum(1 for line in apply_lines if line.startswith("-- plan and apply of")) == 1
    finally:
        for worker in workers.values():
            worker.stop()
