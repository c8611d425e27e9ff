"""A release whose worker is SIGKILLed mid-migration: real worker processes on a release queue
of their own, real PostgreSQL, the probe app's 0004 holding the migration where the test
wants it (see tests/infra_tasks/releases/probe)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from infra_tasks.releases.models import Release, ReleaseState
from infra_tasks.releases.services import release_start
from tests.infra_tasks.releases.probe.models import Switch
from tests.infra_tasks.releases.support import (
    PROBE_MIGRATIONS,
    job_status,
    log_of,
    plan_of,
    probe_applied,
    probe_at,
    release_finished,
)
from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.enqueue import Requester
from workers.reconcile import jobs_mark_lost, lost_window

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("probe_restored"),
    pytest.mark.waits,
]

# Short, so SQS hands a dead worker's release back within the test.
VISIBILITY_SECONDS = 5


class ReleaseWorkers:
    """Release workers on a queue of their own, started and SIGKILLed by the test."""

    def __init__(self, env: dict[str, str], run_dir: Path, prefix: str) -> None:
        self.env, self.run_dir, self.prefix = env, run_dir, prefix
        self.started: list[WorkerProcess] = []

    def start(self, name: str) -> WorkerProcess:
        worker = WorkerProcess(
            env=self.env,
            queues=["release"],
            log_dir=self.run_dir,
            name=f"{name}-{self.prefix[1:-1]}",
        )
        self.started.append(worker)
        return worker

    def release(self, version: str) -> Release:
        with publishing_to(self.prefix):
            started = release_start(version=version, requester=Requester.cli("deploy"))
        return started.release


@pytest.fixture
def release_workers(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> Iterator[ReleaseWorkers]:
    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url = sqs.create_queue(
        QueueName=f"{prefix}release",
        Attributes={"VisibilityTimeout": str(VISIBILITY_SECONDS)},
    )["QueueUrl"]
    env = {
        **worker_env,
        "SQS_QUEUE_PREFIX": prefix,
        "SQS_VISIBILITY_TIMEOUT_SECONDS": str(VISIBILITY_SECONDS),
    }
    workers = ReleaseWorkers(env, run_dir, prefix)
    try:
        yield workers
    finally:
        Switch.objects.filter(name="hold").delete()
        for worker in workers.started:
            worker.kill()
        sqs.purge_queue(QueueUrl=url)


def migrating_in_0004(release: Release) -> bool:
    return any("Applying release_probe.0004_hold" in line for line in log_of(release.task_id))


def test_a_release_whose_worker_is_killed_mid_migration_is_finished_once_by_another(
    release_workers: ReleaseWorkers,
) -> None:
    probe_at("0002")
    Switch.objects.create(name="hold")
    first, second = release_workers.start("one"), release_workers.start("two")
    release = release_workers.release("kill-1")
    wait_until(lambda: migrating_in_0004(release), timeout=60, message="0004 under way")
    holder = TaskResult.objects.get(task_id=release.task_id).worker
    (victim,) = [w for w in (first, second) if w.hostname == holder]
    (survivor,) = [w for w in (first, second) if w is not victim]
    # While its worker lives, the other worker never starts the same release.
    assert f"[{release.task_id}]" not in survivor.log_text()
    assert Release.objects.get(pk=release.pk).attempts == 1

    victim.kill()
    # Its database session died with it: the migration lock is free and 0004 rolled back.
    assert Release.objects.get(pk=release.pk).state == ReleaseState.RUNNING
    Switch.objects.filter(name="hold").delete()

    done = release_finished("kill-1", timeout=90)
    assert done.state == ReleaseState.SUCCEEDED, done.error
    assert done.attempts == 2
    # The plan is the one computed under the lock by the attempt that finished.
    assert done.plan == plan_of("0004_hold", "0005_fail")
    assert probe_applied() == PROBE_MIGRATIONS
    lines = log_of(release.task_id)
    assert "-- delivered again after the worker was lost; starting over --" in lines
    assert sum(1 for line in lines if line.startswith("  Applying release_probe.0003")) == 1
    job_status(release.task_id, "SUCCESS")
    assert TaskResult.objects.get(task_id=release.task_id).worker == survivor.hostname


def test_a_release_whose_worker_is_lost_for_good_ends_failed_and_runs_again(
    release_workers: ReleaseWorkers,
) -> None:
    """No release worker is left to take it over: the reconciler ends its job "worker lost",
    and the release with it, rather than "running" for good with no way to run it again
    from its page (which offers that to failed releases)."""
    probe_at("0002")
    Switch.objects.create(name="hold")
    only = release_workers.start("only")
    release = release_workers.release("kill-2")
    wait_until(lambda: migrating_in_0004(release), timeout=60, message="0004 under way")
    only.kill()
    # Its log names the migration it was in, stored as it started, not lost with the worker.
    assert "  Applying release_probe.0004_hold..." in log_of(release.task_id)

    # The reconciler's pass once its window has gone by (the real beat entry is tested in
    # tests/workers; here it is called at that moment).
    later = timezone.now() + lost_window() + timedelta(seconds=1)
    assert jobs_mark_lost(now=later) == [release.task_id]
    job_status(release.task_id, "FAILURE")
    lost = Release.objects.get(pk=release.pk)
    assert lost.state == ReleaseState.FAILED
    assert "worker lost" in lost.error and lost.finished_at is not None
    assert "run it again" in lost.error

    Switch.objects.filter(name="hold").delete()
    again = release_workers.release("kill-2")
    assert again.task_id != release.task_id
    assert release.task_id in again.previous_task_ids
    assert Release.objects.get(pk=release.pk).state == ReleaseState.QUEUED
    release_workers.start("replacement")
    done = release_finished("kill-2", timeout=90)
    assert done.state == ReleaseState.SUCCEEDED, done.error
    assert probe_applied() == PROBE_MIGRATIONS


def backends_holding_in_sql() -> list[int]:
    """PostgreSQL backends running 0004's hold statement (see the probe's migration)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE state = 'active'"
            " AND query LIKE %s AND pid <> pg_backend_pid()",
            ["%name = 'hold-in-sql'%"],
        )
        return [pid for (pid,) in cursor.fetchall()]


def test_a_release_whose_process_is_killed_inside_a_long_statement_leaves_no_session_behind(
    release_workers: ReleaseWorkers,
) -> None:
    """PostgreSQL notices a client gone only when it next talks to it: a backend in the
    middle of a long statement (an ALTER on a big table, a CREATE INDEX, a data UPDATE) runs
    it to its end, up to RELEASE_DB_STATEMENT_TIMEOUT, holding the migration lock and the
    tables' locks meanwhile. The release taken over would wait for that lock and fail. The
    migrating session checks its client every few seconds instead, so it ends with it."""
    probe_at("0002")
    Switch.objects.create(name="hold-in-sql")
    worker = release_workers.start("one")
    release = release_workers.release("kill-3")
    wait_until(backends_holding_in_sql, timeout=60, message="0004's statement running")
    orphan = backends_holding_in_sql()
    (pool_pid,) = worker.pool_pids()

    os.kill(pool_pid, signal.SIGKILL)
    # The statement's session ends with the process that ran it, not with the statement.
    wait_until(
        lambda: not sessions_of(orphan),
        timeout=15,
        message=f"the killed process's session {orphan} to end",
    )
    Switch.objects.filter(name="hold-in-sql").delete()
    # Its worker took the job over and finishes it under the lock, once.
    done = release_finished("kill-3", timeout=90)
    assert done.state == ReleaseState.SUCCEEDED, done.error
    assert done.attempts == 2
    assert probe_applied() == PROBE_MIGRATIONS
    assert "-- delivered again after the worker was lost; starting over --" in log_of(
        release.task_id
    )
    job_status(release.task_id, "SUCCESS")


def sessions_of(pids: list[int]) -> list[int]:
    """Which of the backends `pids` still have a session."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", [pids])
        return [pid for (pid,) in cursor.fetchall()]
