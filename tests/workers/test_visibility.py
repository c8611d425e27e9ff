"""Short visibility timeouts with extension: a live worker keeps what it holds, a dead one's
jobs, running or prefetched, come back to another worker within about one timeout.

Real workers on the infra queue (an hour's time limit and more) of their own SQS queues,
with a 6 s visibility timeout instead of 90 s so the test takes seconds, not minutes.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.jobs import diagnostic_queued, job_status
from tests.support.servers import (
    AwsEndpoint,
    SqsFaults,
    WorkerProcess,
    short_visibility_queue,
    wait_until,
)
from workers.models import DiagnosticRun
from workers.queues import QUEUES
from workers.selectors import job_log_since
from workers.tasks import diagnostic_run_execute

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]

VISIBILITY = 6


def test_a_dead_workers_running_and_prefetched_jobs_complete_on_another_worker(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    assert QUEUES["infra"].time_limit >= 3600
    own = short_visibility_queue(aws, worker_env, VISIBILITY)
    prefix, env = own.prefix, own.env
    # One pool process and room for a second message: one job runs, one waits prefetched.
    first = WorkerProcess(
        env=env,
        queues=["infra"],
        log_dir=run_dir,
        name="holder",
        extra_args=["--prefetch-multiplier", "2"],
    )
    second: WorkerProcess | None = None
    try:
        running = diagnostic_queued(prefix, queue="infra", lines=40, duration_seconds=40)
        wait_until(lambda: job_status(running.task_id) == "STARTED", message="the running job")
        waiting = diagnostic_queued(prefix, queue="infra", lines=2, duration_seconds=0.1)
        wait_until(
            lambda: f"[{waiting.task_id}] received" in first.log_text(),
            message="the second job to be prefetched",
        )
        assert job_status(waiting.task_id) == "PENDING"

        second = WorkerProcess(env=env, queues=["infra"], log_dir=run_dir, name="taker")
        # Several timeouts pass while the first worker lives: it keeps both messages.
        wait_until(
            lambda: len(job_log_since(task_id=running.task_id).lines) >= 3 * VISIBILITY + 5,
            timeout=60,
            message="the running job to outlast three visibility timeouts",
        )
        assert " received" not in second.log_text()
        assert DiagnosticRun.objects.get(pk=running.pk).attempts == 1

        first.kill()
        for run in (running, waiting):
            task_id = run.task_id
            wait_until(
                lambda: job_status(task_id) == "SUCCESS",  # noqa: B023 (called at once)
                timeout=120,
                message="the dead worker's job to complete on the other worker",
            )
            assert TaskResult.objects.get(task_id=task_id).worker == second.hostname
        assert DiagnosticRun.objects.get(pk=running.pk).attempts == 2
        assert DiagnosticRun.objects.get(pk=waiting.pk).attempts == 1
    finally:
        first.stop()
        if second is not None:
            second.stop()
        aws.client("sqs").purge_queue(QueueUrl=own.url)


def test_a_job_running_through_an_sqs_hang_is_not_run_again_by_another_worker(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint
) -> None:
    """SQS hangs (frozen: connections accepted, never answered) for longer than the
    visibility timeout while a job runs. Its message is visible again when SQS answers, and
    the other worker receives it; the job's claim, renewed from the database through the
    hang, tells it the job is held, so it is not run a second time beside the first."""
    queue = short_visibility_queue(
        endpoint,
        {**worker_env, "AWS_ENDPOINT_URL": endpoint.url, "AWS_ENDPOINT_URL_SQS": endpoint.url},
        VISIBILITY,
    )
    workers = [
        WorkerProcess(env=queue.env, queues=["infra"], log_dir=run_dir, name=f"hang-{n}")
        for n in ("one", "two")
    ]
    try:
        run = diagnostic_queued(
            queue.prefix,
            queue="infra",
            duration_seconds=20,
            lines=40,
            endpoint_url=endpoint.url,
        )
        wait_until(lambda: job_status(run.task_id) == "STARTED", timeout=30, message="started")
        endpoint.freeze()
        # The outage itself, two visibility timeouts: the message is visible again once SQS
        # answers, unless the holder's extension queued during the hang reaches SQS first.
        time.sleep(2 * VISIBILITY)
        endpoint.thaw()
        # So that a second delivery happens in every run, not only when the extension loses
        # that race, SQS's at-least-once delivery is played out with a copy of the message.
        with publishing_to(queue.prefix, endpoint_url=endpoint.url):
            diagnostic_run_execute.apply_async(args=[run.pk], task_id=run.task_id, queue="infra")

        wait_until(
            lambda: job_status(run.task_id) == "SUCCESS", timeout=60, message="the job to succeed"
        )
        run.refresh_from_db()
        assert (run.state, run.attempts, run.error) == (DiagnosticRun.State.SUCCEEDED, 1, "")
        logs = "".join(worker.log_text() for worker in workers)
        assert f"duplicate delivery of workers.tasks.diagnostic_run_execute [{run.task_id}]" in logs
        assert "raised unexpected" not in logs
    finally:
        for worker in workers:
            worker.stop()


def test_sqs_refusing_to_extend_a_running_jobs_message_is_logged_and_the_job_runs_once(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """SQS answers ChangeMessageVisibility with 500s (a partial outage): the message comes
    back while the job runs and the claim keeps the copy from running it again. The worker
    said nothing of it: every refusal was logged at debug level as if the message had been
    acknowledged meanwhile."""
    own = short_visibility_queue(aws, worker_env, VISIBILITY)
    faults = SqsFaults(aws)
    worker = WorkerProcess(
        env={**own.env, "AWS_ENDPOINT_URL_SQS": faults.url},
        queues=["infra"],
        log_dir=run_dir,
        concurrency=2,
    )
    try:
        wait_until(worker.has_received, timeout=30, message="the worker to receive")
        faults.failing.add("ChangeMessageVisibility")
        run = diagnostic_queued(own.prefix, queue="infra", duration_seconds=3 * VISIBILITY)
        wait_until(
            lambda: job_status(run.task_id) == "SUCCESS", timeout=60, message="the job to succeed"
        )
        assert faults.refused["ChangeMessageVisibility"] > 0
        run.refresh_from_db()
        assert (run.state, run.attempts) == (DiagnosticRun.State.SUCCEEDED, 1)
        assert "not extended (InternalError" in worker.log_text()
    finally:
        worker.stop()
        faults.stop()
        aws.client("sqs").purge_queue(QueueUrl=own.url)
