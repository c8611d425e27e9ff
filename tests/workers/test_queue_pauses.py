"""A paused queue stays paused for a worker that starts later, and resumes for it too; a
worker with every queue paused stays up and healthy: it has nothing to poll, by order."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from tests.support.broker import publishing_to
from tests.support.jobs import job_status
from tests.support.servers import WorkerProcess, new_queue_prefix, wait_until, watchdog_env
from tests.workers.test_monitoring import sqs_queues_named
from workers.enqueue import Requester
from workers.models import WorkerHeartbeat
from workers.operations import worker_rows
from workers.queue_pauses import QueuePauseRefused, queue_pause, queue_resume
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db(transaction=True)


# The watchdog's limit for the workers below: silence this long stops a worker that consumes.
# Not less: a queue resumed on a worker that consumed none is first polled about 3 s later
# (kombu's event loop), and its silence counts from the resume.
EXIT_SECONDS = 10


def watched_worker_env(worker_env: dict[str, str], prefix: str, liveness: Path) -> dict[str, str]:
    return {**worker_env, "SQS_QUEUE_PREFIX": prefix, **watchdog_env(liveness, EXIT_SECONDS)}


def heartbeat(worker: WorkerProcess) -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.get(hostname=worker.hostname)


def stays_running_and_healthy(worker: WorkerProcess, liveness: Path, seconds: float) -> None:
    """For `seconds` the worker runs and its health check passes."""
    from workers.liveness import consumer_alive

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert worker.process.poll() is None, worker.log_text()[-3000:]
        assert consumer_alive(str(liveness), EXIT_SECONDS), "the health check failed"
        time.sleep(0.5)
    assert "worker consumer silent" not in worker.log_text()


@pytest.fixture
def own_queues(worker_env: dict[str, str]) -> str:
    """Queues of this test's own (no other worker takes their jobs)."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    return prefix


@pytest.fixture
def ops() -> object:
    return get_user_model().objects.create_user("ops", is_staff=True)


@pytest.fixture
def liveness(tmp_path: Path) -> Path:
    return tmp_path / "consuming"


@pytest.fixture
def late_worker(
    own_queues: str, worker_env: dict[str, str], run_dir: Path, ops: object, liveness: Path
) -> Iterator[WorkerProcess]:
    """A worker for the default queue, started while that queue is paused."""
    queue_pause(queue="default", user=ops)
    process = WorkerProcess(
        env=watched_worker_env(worker_env, own_queues, liveness),
        queues=["default"],
        log_dir=run_dir,
    )
    yield process
    process.stop()


@pytest.mark.waits
def test_a_worker_started_while_its_queue_is_paused_waits_and_runs_after_resume(
    late_worker: WorkerProcess, own_queues: str, ops: object, liveness: Path
) -> None:
    assert "queue default is paused: not consuming from it" in late_worker.log_text()
    with publishing_to(own_queues):
        run = diagnostic_run_start(requester=Requester.cli("test"), lines=2, duration_seconds=0.1)
    # Many pause checks and SQS polls later, past the watchdog's limit, the worker has not
    # taken it, and it has not stopped itself for having nothing to poll.
    stays_running_and_healthy(late_worker, liveness, 1.5 * EXIT_SECONDS)
    assert job_status(run.task_id) == "PENDING"

    queue_resume(queue="default", user=ops)
    wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=60, message="the job to run")


def test_pausing_twice_or_an_unknown_queue_is_refused(ops: object) -> None:
    queue_pause(queue="media", user=ops)
    with pytest.raises(QueuePauseRefused, match="paused already"):
        queue_pause(queue="media", user=ops)
    with pytest.raises(QueuePauseRefused, match="no queue"):
        queue_pause(queue="nope", user=ops)
    queue_resume(queue="media", user=ops)
    with pytest.raises(QueuePauseRefused, match="not paused"):
        queue_resume(queue="media", user=ops)


@pytest.mark.waits
def test_a_worker_whose_every_queue_is_paused_stays_healthy_and_consumes_after_resume(
    own_queues: str,
    worker_env: dict[str, str],
    run_dir: Path,
    ops: object,
    liveness: Path,
    settings: Any,
) -> None:
    # Told to take no work, it has nothing to poll: that silence is obedience, not a stalled
    # consumer. Stopped for it, its replacement would meet the same pause and stop again.
    worker = WorkerProcess(
        env=watched_worker_env(worker_env, own_queues, liveness),
        queues=["default"],
        log_dir=run_dir,
    )
    try:
        wait_until(worker.has_received, timeout=30, message="the consumer to receive")
        queue_pause(queue="default", user=ops)
        wait_until(
            lambda: "queue default paused: stop consuming" in worker.log_text(),
            message="the worker to stop consuming",
        )
        stays_running_and_healthy(worker, liveness, 1.5 * EXIT_SECONDS)
        # The operations page says it consumes no queue now, not that its consumer stalled.
        settings.WORKER_CONSUMER_STALLED_SECONDS = EXIT_SECONDS
        (row,) = (r for r in worker_rows(now=timezone.now()) if r.heartbeat == heartbeat(worker))
        assert row.online and not row.stalled and not row.stalled_queues
        assert row.heartbeat.queues == []

        queue_resume(queue="default", user=ops)
        with publishing_to(own_queues):
            run = diagnostic_run_start(
                requester=Requester.cli("test"), lines=2, duration_seconds=0.1
            )
        # Its silence counts from the resume, not from its last receive before the pause: it
        # is not stopped before its first poll.
        wait_until(lambda: job_status(run.task_id) == "SUCCESS", message="the job to run")
        assert worker.process.poll() is None
    finally:
        worker.stop()


def test_the_operations_page_shows_a_pause_and_a_resume_at_once_not_at_the_next_heartbeat(
    own_queues: str, worker_env: dict[str, str], run_dir: Path, ops: object, admin_client: Any
) -> None:
    # A beat a minute apart: the row changes because the queues did, not because it was due.
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": own_queues, "WORKER_HEARTBEAT_SECONDS": "60"},
        queues=["default"],
        log_dir=run_dir,
    )

    def row() -> str:
        """The worker's row, or "" before its first beat is recorded (it reports ready first)."""
        page = admin_client.get("/ops/operations/").content.decode()
        _, found, after = page.partition(f'data-worker="{worker.hostname}"')
        return after.split("</tr>", 1)[0] if found else ""

    try:
        wait_until(lambda: "<td>default</td>" in row(), message="the worker's first beat")
        queue_pause(queue="default", user=ops)
        wait_until(
            lambda: "<td>none now (paused)</td>" in row(),
            timeout=10,
            message="the row to say it consumes no queue",
        )
        queue_resume(queue="default", user=ops)
        wait_until(
            lambda: "<td>default</td>" in row(),
            timeout=10,
            message="the row to say it consumes the queue again",
        )
    finally:
        worker.stop()
