"""tests/support/servers.SharedWorker: a session's shared worker that exited is replaced before
the next test that needs it, and the test run says so."""

from __future__ import annotations

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
