"""A paused queue stays paused for a worker that starts later, and resumes for it too."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

from tests.support.broker import publishing_to
from tests.support.jobs import job_status
from tests.support.servers import WorkerProcess, new_queue_prefix, wait_until
from tests.workers.test_monitoring import sqs_queues_named
from workers.enqueue import Requester
from workers.queue_pauses import QueuePauseRefused, queue_pause, queue_resume
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db(transaction=True)


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
def late_worker(
    own_queues: str, worker_env: dict[str, str], run_dir: Path, ops: object
) -> Iterator[WorkerProcess]:
    """A worker for the default queue, started while that queue is paused."""
    queue_pause(queue="default", user=ops)
    process = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": own_queues}, queues=["default"], log_dir=run_dir
    )
    yield process
    process.stop()


def test_a_worker_started_while_its_queue_is_paused_waits_and_runs_after_resume(
    late_worker: WorkerProcess, own_queues: str, ops: object
) -> None:
    assert "queue default is paused: not consuming from it" in late_worker.log_text()
    with publishing_to(own_queues):
        run = diagnostic_run_start(requester=Requester.cli("test"), lines=2, duration_seconds=0.1)
    # Several pause checks and SQS polls later, the worker has not taken it.
    time.sleep(3)
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
