"""Dead letters: garbage goes to the dead-letter queue at once, lost jobs end visibly, and
staff see, redrive and discard what is in the dead-letter queues."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from django.test import override_settings
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.dead_letters import REASON_ATTRIBUTE
from workers.enqueue import Requester
from workers.models import DiagnosticRun
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db(transaction=True)


def _queue_with_dlq(sqs: object, prefix: str, queue: str, visibility: int = 60) -> tuple[str, str]:
    dlq_url = sqs.create_queue(QueueName=f"{prefix}{queue}-dlq")["QueueUrl"]  # type: ignore[attr-defined]
    arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[  # type: ignore[attr-defined]
        "Attributes"
    ]["QueueArn"]
    url = sqs.create_queue(  # type: ignore[attr-defined]
        QueueName=f"{prefix}{queue}",
        Attributes={
            "VisibilityTimeout": str(visibility),
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    return url, dlq_url


def _count(sqs: object, url: str) -> int:
    attributes = sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_a_message_that_is_no_job_goes_to_the_dead_letter_queue_on_first_receipt(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url, dlq_url = _queue_with_dlq(sqs, prefix, "default", visibility=600)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix}, queues=["default"], log_dir=run_dir
    )
    try:
        sqs.send_message(QueueUrl=url, MessageBody="not a job at all")
        # Far sooner than the five 600 s receives the redrive policy would wait for.
        wait_until(lambda: _count(sqs, dlq_url) == 1, timeout=30, message="the dead letter")
        assert _count(sqs, url) == 0
        message = sqs.receive_message(QueueUrl=dlq_url, MessageAttributeNames=["All"])["Messages"][
            0
        ]
        assert message["Body"] == "not a job at all"
        reason = message["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"]
        assert reason
        assert "moved a message" in worker.log_text()
    finally:
        worker.stop()


def test_a_job_whose_worker_is_gone_ends_failure_worker_lost_with_its_domain_row(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    from workers.reconcile import jobs_mark_lost

    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    url, _ = _queue_with_dlq(sqs, prefix, "default", visibility=600)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix, "WORKER_HEARTBEAT_SECONDS": "1"},
        queues=["default"],
        log_dir=run_dir,
    )
    try:
        with publishing_to(prefix):
            run = diagnostic_run_start(
                requester=Requester.cli("test"), lines=60, duration_seconds=60
            )
        wait_until(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="STARTED").exists(),
            message="the job to start",
        )
        # While its worker beats, the job is not lost, however short the window.
        with override_settings(SQS_VISIBILITY_TIMEOUT_SECONDS=1, WORKER_HEARTBEAT_SECONDS=1):
            assert jobs_mark_lost() == []
            worker.kill()
            lost = wait_until(jobs_mark_lost, timeout=30, message="the reconciler to act")
        assert lost == [run.task_id]
        result = TaskResult.objects.get(task_id=run.task_id)
        assert result.status == "FAILURE"
        assert "worker lost" in (result.traceback or "")
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.FAILED
        assert run.error.startswith("worker lost: ") and worker.hostname in run.error
    finally:
        worker.stop()
        sqs.purge_queue(QueueUrl=url)
