"""PostgreSQL drops every connection under a running system (an RDS failover or restart).

A real worker, this process's relay and the worker's heartbeat thread all hold or reopen
connections to the test database; every backend of it but this test's own is terminated
(pg_terminate_backend, what a failover does to clients), and the system must carry on.
Only the test database's backends are terminated: the server is shared.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.database import (
    FreezableProxy,
    database_down,
    other_backends_terminate,
)
from tests.support.jobs import assert_failed_on_connection_loss, job_status
from tests.support.servers import (
    WorkerProcess,
    wait_until,
    watchdog_env,
)
from workers.enqueue import Requester
from workers.models import DiagnosticRun, Job, WorkerHeartbeat
from workers.selectors import job_log_since
from workers.services import diagnostic_run_start

# How long the database stays down after a job it broke has given up.
OUTAGE_AFTER_JOB_SECONDS = 5

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]


@pytest.fixture
def db_worker(
    worker_env: dict[str, str], run_dir: Path, prefix: str, tmp_path: Path
) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "WORKER_HEARTBEAT_SECONDS": "0.5",
            "WORKER_LIVENESS_FILE": str(tmp_path / "consuming"),
        },
        queues=["default"],
        log_dir=run_dir,
        concurrency=1,
        name="failover",
    )
    yield worker
    worker.stop()


def _run_diagnostic(prefix: str, *, lines: int, duration_seconds: float) -> DiagnosticRun:
    with publishing_to(prefix):
        return diagnostic_run_start(
            requester=Requester.cli("test"), lines=lines, duration_seconds=duration_seconds
        )


def test_after_every_database_connection_is_dropped_an_idle_worker_runs_the_next_job(
    db_worker: WorkerProcess, prefix: str, tmp_path: Path
) -> None:
    from workers.liveness import consumer_alive

    # A first job: the pool process keeps its connection open (CONN_MAX_AGE) afterwards.
    first = _run_diagnostic(prefix, lines=2, duration_seconds=0.1)
    wait_until(lambda: job_status(first.task_id) == "SUCCESS", message="the first job")
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(hostname=db_worker.hostname).exists(),
        message="the worker's heartbeat",
    )

    dropped_at = timezone.now()
    # Often nothing is open to terminate: between jobs the pool process (Celery's Django
    # fixup), the heartbeat and visibility threads and this process's relay all close their
    # connections. Whatever is open is cut.
    other_backends_terminate()

    run = _run_diagnostic(prefix, lines=3, duration_seconds=0.1)
    wait_until(
        lambda: job_status(run.task_id) == "SUCCESS",
        message="the worker to run a job after its connections were dropped",
    )
    result = TaskResult.objects.get(task_id=run.task_id)
    assert json.loads(result.result) == {"run": run.pk, "lines": 3, "attempts": 1}
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.SUCCEEDED
    # The relay published it, and recorded that it did.
    assert Job.objects.get(task_id=run.task_id).sent_at is not None

    # The heartbeat thread records again, with the consumer receiving, and the container's
    # health check still sees a live consumer.
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(
            hostname=db_worker.hostname,
            last_seen_at__gt=dropped_at,
            last_receive_at__gt=dropped_at,
        ).exists(),
        message="the worker's heartbeat after the connections were dropped",
    )
    assert consumer_alive(str(tmp_path / "consuming"), 5)
    assert db_worker.process.poll() is None


def test_a_job_that_arrives_while_the_database_refuses_connections_runs_once_it_is_back(
    db_worker: WorkerProcess, prefix: str, tmp_path: Path
) -> None:
    from workers.liveness import consumer_alive

    first = _run_diagnostic(prefix, lines=2, duration_seconds=0.1)
    wait_until(lambda: job_status(first.task_id) == "SUCCESS", message="the first job")

    with database_down():
        down_at = timezone.now()
        run = _run_diagnostic(prefix, lines=3, duration_seconds=0.1)
        wait_until(
            lambda: f"[{run.task_id}] received" in db_worker.log_text(),
            message="the worker to receive the job while the database is down",
        )
        # Not failed (its failure could not be recorded either), not lost: sent again.
        wait_until(
            lambda: (
                "the database is unreachable" in db_worker.log_text()
                and "not started, delivered again" in db_worker.log_text()
            ),
            message="the delivery to be put off until the database is back",
        )
        assert job_status(run.task_id) == "PENDING"
        wait_until(
            lambda: "worker heartbeat: cannot record" in db_worker.log_text(),
            message="the heartbeat to notice",
        )
    wait_until(
        lambda: job_status(run.task_id) == "SUCCESS",
        timeout=120,
        message="the job to run once the database is back",
    )
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.SUCCEEDED
    # This process's relay, whose "sent" mark failed in the outage, publishes and marks again.
    after = _run_diagnostic(prefix, lines=2, duration_seconds=0.1)
    wait_until(lambda: job_status(after.task_id) == "SUCCESS", message="a job after the outage")
    assert Job.objects.get(task_id=after.task_id).sent_at is not None
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(
            hostname=db_worker.hostname, last_seen_at__gt=down_at, last_receive_at__gt=down_at
        ).exists(),
        message="the worker's heartbeat once the database is back",
    )
    assert consumer_alive(str(tmp_path / "consuming"), 5)
    assert db_worker.process.poll() is None


def test_a_job_whose_connections_are_dropped_mid_run_ends_recorded_and_the_worker_goes_on(
    db_worker: WorkerProcess, prefix: str
) -> None:
    run = _run_diagnostic(prefix, lines=100, duration_seconds=10)
    wait_until(
        lambda: len(job_log_since(task_id=run.task_id).lines) >= 5,
        message="the job to be writing its log",
    )
    assert other_backends_terminate() >= 1

    wait_until(
        lambda: job_status(run.task_id) in ("SUCCESS", "FAILURE"),
        timeout=60,
        message="the job to end in a recorded state",
    )
    if job_status(run.task_id) == "FAILURE":
        assert_failed_on_connection_loss(run)
    else:
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.SUCCEEDED

    after = _run_diagnostic(prefix, lines=2, duration_seconds=0.1)
    wait_until(
        lambda: job_status(after.task_id) == "SUCCESS",
        message="the worker to run the next job",
    )


def test_a_job_whose_database_stays_down_past_its_end_is_recorded_failed_once_it_is_back(
    db_worker: WorkerProcess, prefix: str
) -> None:
    """The database goes away mid-job and only comes back after the job has given up: the
    failure could not be stored when it happened, and must be once the database is back."""
    run = _run_diagnostic(prefix, lines=100, duration_seconds=10)
    wait_until(
        lambda: len(job_log_since(task_id=run.task_id).lines) >= 5,
        message="the job to be writing its log",
    )
    with database_down():
        wait_until(
            lambda: (
                "could not release the claim" in db_worker.log_text()
                or "waiting for the database" in db_worker.log_text()
            ),
            timeout=30,
            message="the job to give up while the database is down",
        )
        # The outage lasts on after the job has given up.
        time.sleep(OUTAGE_AFTER_JOB_SECONDS)
        assert job_status(run.task_id) == "STARTED"
    wait_until(
        lambda: job_status(run.task_id) in ("SUCCESS", "FAILURE"),
        timeout=60,
        message="the job to end in a recorded state once the database is back",
    )
    result = TaskResult.objects.get(task_id=run.task_id)
    run.refresh_from_db()
    if result.status == "FAILURE":
        outcome = json.loads(result.result)
        assert outcome["exc_type"] == "OperationalError", outcome
        assert run.state == DiagnosticRun.State.FAILED
        assert "OperationalError" in run.error or "terminating connection" in run.error
    else:
        assert run.state == DiagnosticRun.State.SUCCEEDED

    after = _run_diagnostic(prefix, lines=2, duration_seconds=0.1)
    wait_until(
        lambda: job_status(after.task_id) == "SUCCESS",
        message="the worker to run the next job",
    )


def test_a_database_that_hangs_does_not_stale_the_health_check_of_a_worker_still_consuming(
    worker_env: dict[str, str], run_dir: Path, prefix: str, tmp_path: Path
) -> None:
    """The heartbeat's write hangs on a database that black-holes its traffic; the consumer
    still receives from SQS, so the worker is alive and its health check must say so. The
    file was touched by the heartbeat's thread after its write: it went stale and ECS
    replaced a worker that was consuming."""
    from workers.liveness import consumer_alive

    exit_seconds = 6
    db = connection.settings_dict
    proxy = FreezableProxy(db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432))
    liveness_file = str(tmp_path / "consuming")
    worker = WorkerProcess(
        env={
            **worker_env,
            "DATABASE_URL": f"postgres://{db['USER']}@127.0.0.1:{proxy.port}/{db['NAME']}",
            "SQS_QUEUE_PREFIX": prefix,
            **watchdog_env(liveness_file, exit_seconds),
        },
        queues=["default"],
        log_dir=run_dir,
        concurrency=1,
        name="hung-db",
    )
    try:
        wait_until(worker.has_received, message="the worker to receive")
        wait_until(lambda: consumer_alive(liveness_file, exit_seconds), message="a healthy worker")
        proxy.freeze()
        # Watched for twice the limit: the heartbeat is stuck the whole time.
        until = time.monotonic() + 2 * exit_seconds
        while time.monotonic() < until:
            assert consumer_alive(liveness_file, exit_seconds), "the health check failed"
            assert worker.process.poll() is None, "the worker stopped"
            time.sleep(0.5)
        proxy.thaw()
        thawed_at = timezone.now()
        wait_until(
            lambda: WorkerHeartbeat.objects.filter(
                hostname=worker.hostname, last_seen_at__gt=thawed_at
            ).exists(),
            message="the heartbeat once the database answers again",
        )
    finally:
        proxy.thaw()
        worker.stop()
        proxy.close()
