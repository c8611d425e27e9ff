"""SQS unreachable when a job finishes: the worker cannot acknowledge (delete) its message.

A real worker (acks_late) runs a diagnostic job against its own moto_server; the endpoint
is killed while the job runs and the job finishes during the outage, so DeleteMessage fails.
The endpoint then comes back. moto comes back with no state at all (no queues, no messages,
no receipt handles), so SQS's own redelivery of the unacknowledged message cannot happen
here: the redelivery is played by sending the identical message (same task id, same
arguments) again, which is what SQS would deliver once the visibility timeout ran out.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.jobs import diagnostic_queued, job_status
from tests.support.servers import (
    AwsEndpoint,
    SqsFaults,
    WorkerProcess,
    new_queue_prefix,
    own_queues_create,
    queue_with_dead_letters,
    wait_until,
)
from workers.models import DiagnosticRun
from workers.outbox import OutboundJob, publish_now

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]


def _queue_empty(endpoint: AwsEndpoint, prefix: str) -> bool:
    sqs = endpoint.client("sqs")
    url = sqs.get_queue_url(QueueName=f"{prefix}default")["QueueUrl"]
    counts = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return not any(int(count) for count in counts.values())


def _worker_on_own_queues(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint, name: str
) -> tuple[WorkerProcess, str]:
    """A worker on the default queue of queues of its own at `endpoint`, and their prefix."""
    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix)
    worker = WorkerProcess(
        env={
            **worker_env,
            "AWS_ENDPOINT_URL": endpoint.url,
            "AWS_ENDPOINT_URL_SQS": endpoint.url,
            "SQS_QUEUE_PREFIX": prefix,
        },
        queues=["default"],
        log_dir=run_dir,
        name=name,
    )
    return worker, prefix


def _started(
    prefix: str, endpoint: AwsEndpoint, *, lines: int, duration_seconds: float
) -> DiagnosticRun:
    run = diagnostic_queued(
        prefix,
        queue="default",
        lines=lines,
        duration_seconds=duration_seconds,
        endpoint_url=endpoint.url,
    )
    wait_until(lambda: job_status(run.task_id) == "STARTED", message="the job to start")
    return run


def test_a_job_finishing_while_sqs_is_down_stays_succeeded_and_its_worker_consumes_again(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint
) -> None:
    from workers.tasks import diagnostic_run_execute

    worker, prefix = _worker_on_own_queues(worker_env, run_dir, endpoint, "ackless")
    try:
        run = _started(prefix, endpoint, lines=20, duration_seconds=6)

        endpoint.halt()
        wait_until(
            lambda: job_status(run.task_id) == "SUCCESS",
            timeout=30,
            message="the job to finish while SQS is down",
        )
        wait_until(
            lambda: "Couldn't ack" in worker.log_text(),
            timeout=30,
            message="the worker to fail to delete the finished job's message",
        )
        wait_until(
            lambda: "SQS poll of default failed" in worker.log_text(),
            timeout=30,
            message="the worker to poll SQS in vain",
        )
        result = TaskResult.objects.get(task_id=run.task_id)
        summary = {"run": run.pk, "lines": 20, "attempts": 1}
        assert json.loads(result.result) == summary

        endpoint.start()
        # A restarted moto_server has forgotten its queues; SQS itself would still have them.
        own_queues_create(endpoint, prefix)

        after = diagnostic_queued(
            prefix, queue="default", lines=2, duration_seconds=0.1, endpoint_url=endpoint.url
        )
        wait_until(
            lambda: job_status(after.task_id) == "SUCCESS",
            timeout=60,
            message="the worker to consume a job after the outage",
        )
        assert worker.process.poll() is None

        # SQS's redelivery of the message it never saw deleted: the very same message.
        finished = TaskResult.objects.get(task_id=run.task_id)
        with publishing_to(prefix, endpoint_url=endpoint.url):
            publish_now(
                OutboundJob(
                    task=diagnostic_run_execute,
                    task_id=run.task_id,
                    args=[run.pk],
                    kwargs={},
                    options={"queue": "default"},
                )
            )
        wait_until(
            lambda: worker.log_text().count(f"[{run.task_id}] received") == 2,
            message="the message to be delivered again",
        )
        wait_until(lambda: _queue_empty(endpoint, prefix), message="the redelivery to be acked")
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.SUCCEEDED
        assert run.attempts == 1  # the work was not done again
        # The finished record was left as it was: not marked STARTED again, not rewritten.
        again = TaskResult.objects.get(task_id=run.task_id)
        assert (again.status, again.result, again.worker) == (
            "SUCCESS",
            finished.result,
            finished.worker,
        )
        assert (again.date_started, again.date_done) == (finished.date_started, finished.date_done)
    finally:
        worker.stop()


def test_a_job_finishing_while_sqs_hangs_holds_its_worker_seconds_not_a_minute(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint
) -> None:
    """SQS that accepts connections and never answers (a frozen endpoint) when a job ends:
    kombu's DeleteMessage runs on the worker's event loop, which waits read_timeout per
    attempt. At 30 s x 2 attempts the worker received nothing for over a minute."""
    worker, prefix = _worker_on_own_queues(worker_env, run_dir, endpoint, "ackhang")
    try:
        run = _started(prefix, endpoint, lines=4, duration_seconds=4)

        endpoint.freeze()
        wait_until(
            lambda: job_status(run.task_id) == "SUCCESS",
            timeout=30,
            message="the job to finish while SQS hangs",
        )
        # The default client (5 s x 2 attempts, with back-off between) gives up well
        # within this; the former one (30 s x 2) took over a minute.
        wait_until(
            lambda: "Couldn't ack" in worker.log_text(),
            timeout=25,
            message="the worker to give up deleting the finished job's message",
        )
        assert worker.process.poll() is None
    finally:
        endpoint.thaw()
        worker.stop()


def test_sqs_refusing_to_delete_finished_jobs_messages_is_logged_once_per_run_of_refusals(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """SQS answers DeleteMessage with 500s (a partial outage) when jobs finish: kombu
    catches the error and gives the message back, and with a redrive policy (as deployed)
    it says nothing at all: the messages came back after the visibility timeout with no
    word of why. The first refusal of a run is logged naming SQS's error, the rest of the
    run is not, and the first acknowledgement that goes through says so."""
    sqs = aws.client("sqs")
    prefix = new_queue_prefix()
    url, _ = queue_with_dead_letters(sqs, prefix, "default", visibility=120)
    faults = SqsFaults(aws)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix, "AWS_ENDPOINT_URL_SQS": faults.url},
        queues=["default"],
        log_dir=run_dir,
    )
    refusal = "SQS refused to delete (acknowledge) a message of"
    try:
        wait_until(worker.has_received, timeout=30, message="the worker to receive")
        faults.failing.add("DeleteMessage")
        first = diagnostic_queued(prefix, queue="default", lines=2, duration_seconds=0.1)
        wait_until(
            lambda: refusal in worker.log_text(), message="the refused acknowledgement logged"
        )
        assert job_status(first.task_id) == "SUCCESS"
        assert f"{prefix}default (InternalError)" in worker.log_text()
        per_ack = faults.refused["DeleteMessage"]

        second = diagnostic_queued(prefix, queue="default", lines=2, duration_seconds=0.1)
        wait_until(lambda: job_status(second.task_id) == "SUCCESS", message="the second job")
        wait_until(
            lambda: faults.refused["DeleteMessage"] == 2 * per_ack,
            message="the second job's acknowledgement refused",
        )
        assert worker.log_text().count(refusal) == 1

        faults.failing.clear()
        third = diagnostic_queued(prefix, queue="default", lines=2, duration_seconds=0.1)
        wait_until(
            lambda: (
                "SQS acknowledges messages again (2 refused, last: InternalError)"
                in worker.log_text()
            ),
            message="the acknowledgement that went through logged",
        )
        assert job_status(third.task_id) == "SUCCESS"
        assert worker.process.poll() is None
    finally:
        worker.stop()
        faults.stop()
        sqs.purge_queue(QueueUrl=url)
