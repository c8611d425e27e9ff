"""Demo data for the dev stack: a dead letter on the operations page, to redrive or discard."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from workers.broker import dead_letter_queue_name
from workers.dead_letters import REASON_ATTRIBUTE, sqs_client
from workers.queue_depths import queue_depths_record

DEMO_BODY = "demo: a message that is no Celery job (discard it on the operations page)"


def seed(*, stdout: Any) -> None:
    client = sqs_client()
    try:
        url = client.get_queue_url(QueueName=dead_letter_queue_name("default"))["QueueUrl"]
        depth = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        if int(depth) == 0:
            client.send_message(
                QueueUrl=url,
                MessageBody=DEMO_BODY,
                MessageAttributes={
                    REASON_ATTRIBUTE: {"DataType": "String", "StringValue": "not a Celery job"}
                },
            )
        queue_depths_record()
    except (BotoCoreError, ClientError) as exc:
        stdout.write(f"no demo dead letter: {exc}")
        return
    stdout.write("demo dead letter in the default queue's dead-letter queue")
