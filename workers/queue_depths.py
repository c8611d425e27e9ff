"""SQS queue depths into the database (GetQueueAttributes), so pages never call AWS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from workers.broker import dead_letter_queue_name, missing_queue_text, sqs_queue_name
from workers.models import QueueDepth
from workers.queues import QUEUES

ATTRIBUTES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}
# A sample must not hang the worker that takes it: fail fast and say so on the page.
CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
)


def _queue_url(client: Any, name: str) -> str:
    base = settings.SQS_QUEUE_URL_BASE
    if base:
        return base.rstrip("/") + "/" + name
    return str(client.get_queue_url(QueueName=name)["QueueUrl"])


def _sample(client: Any, queue: str) -> dict[str, Any]:
    name = sqs_queue_name(queue)
    try:
        url = _queue_url(client, name)
        attributes = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=[*ATTRIBUTES, "CreatedTimestamp"]
        )["Attributes"]
        sample: dict[str, Any] = {
            field: int(attributes.get(name, 0)) for name, field in ATTRIBUTES.items()
        }
        created = attributes.get("CreatedTimestamp")
        if created:
            sample["queue_created_at"] = datetime.fromtimestamp(float(created), tz=UTC)
        name = dead_letter_queue_name(queue)
        dlq_url = _queue_url(client, name)
        sample["dead_letters"] = int(
            client.get_queue_attributes(
                QueueUrl=dlq_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"].get("ApproximateNumberOfMessages", 0)
        )
    except (BotoCoreError, ClientError) as exc:
        # The previous counts stay, marked with why they could not be refreshed.
        return {"error": (missing_queue_text(exc, name) or str(exc))[:500]}
    sample["error"] = ""
    return sample


def queue_depths_record(*, own_queue: str | None = None) -> list[QueueDepth]:
    """Sample every queue (and its dead-letter queue) and store the result per queue.

    `own_queue` is the queue the sampling job's message came from: that message is in flight
    while it samples and is not work waiting on anyone, so it is not counted (it read as
    one more job in flight on its queue in every sample)."""
    client = boto3.client("sqs", region_name=settings.AWS_REGION, config=CLIENT_CONFIG)
    samples = {queue: _sample(client, queue) for queue in QUEUES}
    own = samples.get(own_queue or "")
    if own and "in_flight" in own:
        own["in_flight"] = max(0, own["in_flight"] - 1)
    now = timezone.now()
    with transaction.atomic():
        return [
            QueueDepth.objects.update_or_create(
                queue=queue, defaults={**sample, "sampled_at": now}
            )[0]
            for queue, sample in samples.items()
        ]
