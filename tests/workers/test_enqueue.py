"""job_enqueue sends a job only once the caller's transaction commits."""

from __future__ import annotations

import json
from base64 import b64decode

import pytest
from django.db import transaction

from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, new_queue_prefix
from workers.enqueue import Requester, job_enqueue
from workers.models import Job

pytestmark = pytest.mark.django_db(transaction=True)


class RequestFailed(Exception):
    pass


def test_a_rolled_back_transaction_sends_nothing_and_a_committed_one_sends_its_job(
    sqs_queues: AwsEndpoint,
) -> None:
    from workers.tasks import diagnostic_run_execute

    prefix = new_queue_prefix()
    sqs = sqs_queues.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    with publishing_to(prefix):
        with pytest.raises(RequestFailed), transaction.atomic():
            rolled_back = job_enqueue(
                diagnostic_run_execute, requester=Requester.cli("test"), args=[1]
            )
            raise RequestFailed
        with transaction.atomic():
            committed = job_enqueue(
                diagnostic_run_execute, requester=Requester.cli("test"), args=[2]
            )
    # publishing_to waited for the relay to send everything it was given.

    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    task_ids = [
        json.loads(b64decode(message["Body"]))["headers"]["id"]
        for message in received.get("Messages", [])
    ]
    assert task_ids == [committed]
    assert rolled_back != committed
    assert list(Job.objects.values_list("task_id", flat=True)) == [committed]
