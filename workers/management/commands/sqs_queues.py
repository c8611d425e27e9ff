"""Create the SQS queues with their visibility timeout and dead-letter queues.

Used by the dev stack and the tests against the local SQS-compatible server. Production
queues come from CloudFormation with the same settings (a test keeps them in agreement).
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from django.conf import settings
from django.core.management.base import BaseCommand

from workers.broker import dead_letter_queue_name, sqs_queue_name
from workers.queues import QUEUES

# After this many receives without success a message moves to the dead-letter queue.
MAX_RECEIVE_COUNT = 5


class Command(BaseCommand):
    help = "Create (or update) the SQS queues and their dead-letter queues."

    def handle(self, *args: Any, **options: Any) -> None:
        sqs = boto3.client("sqs", region_name=settings.AWS_REGION)
        for spec in QUEUES.values():
            dlq_url = sqs.create_queue(
                QueueName=dead_letter_queue_name(spec.name),
                Attributes={"MessageRetentionPeriod": str(14 * 24 * 3600)},
            )["QueueUrl"]
            dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
            attributes: dict[Any, str] = {
                "VisibilityTimeout": str(settings.SQS_VISIBILITY_TIMEOUT_SECONDS),
                "RedrivePolicy": json.dumps(
                    {"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)}
                ),
            }
            name = sqs_queue_name(spec.name)
            url = sqs.create_queue(QueueName=name)["QueueUrl"]
            sqs.set_queue_attributes(QueueUrl=url, Attributes=attributes)
            self.stdout.write(
                f"{name}: visibility {settings.SQS_VISIBILITY_TIMEOUT_SECONDS}s, "
                f"dead letters to {dlq_arn}"
            )
