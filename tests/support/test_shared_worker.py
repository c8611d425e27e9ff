"""tests/support/servers.SharedWorker: a session's shared worker that exited or failed its
health check is replaced before the next test that needs it, and the test run says so."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.support.jobs import diagnostic_queued, job_status
from tests.support.servers import (
    AwsEndpoint,
    SharedWorker,
    SharedWorkerReplaced,
    new_queue_prefix,
    own_queues_create,
    wait_until,
)
from workers.liveness import consumer_alive

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_killed_shared_worker_is_replaced_by_one_that_consumes_and_the_run_says_so(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    # Its own instance on queues of its own: the session's shared worker is left alone.
    prefix = new_queue_prefix()
    own_queues_create(aws, prefix, ("default", "media", "infra", "release"))
    shared = SharedWorker({**worker_env, "SQS_QUEUE_PREFIX": prefix}, run_dir)
    try:
        first = shared.running()
        assert shared.running() is first
        first.kill()

        with pytest.warns(SharedWorkerReplaced, match=r"exited with code -9(.|\n)*ready\."):
            second = shared.running()

        assert second is not first and second.process.poll() is None
        run = diagnostic_queued(prefix, queue="default", duration_seconds=0.1)
        wait_until(lambda: job_status(run.task_id) == "SUCCESS", message="the fresh worker")
    finally:
        shared.stop()


def test_a_frozen_shared_worker_fails_its_health_check_and_is_replaced(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    # Too stuck to stop itself when its consumer went silent: as ECS does, the health check.
    prefix = new_queue_prefix()
    own_queues_create(aws, prefix, ("default", "media", "infra", "release"))
    shared = SharedWorker({**worker_env, "SQS_QUEUE_PREFIX": prefix}, run_dir, exit_seconds=2)
    try:
        first = shared.running()
        wait_until(first.has_received, message="the first worker to receive")
        os.killpg(first.process.pid, signal.SIGSTOP)
        wait_until(
            lambda: not consumer_alive(str(shared.liveness_file), 3),
            message="the frozen worker's health check to fail",
        )

        with pytest.warns(SharedWorkerReplaced, match="failed its health check"):
            second = shared.running()

        assert first.process.poll() is not None
        run = diagnostic_queued(prefix, queue="default", duration_seconds=0.1)
        wait_until(lambda: job_status(run.task_id) == "SUCCESS", message="the fresh worker")
        assert shared.running() is second
    finally:
        shared.stop()
