"""Broker facts shared by the Celery app, the dev stack and the queue management command."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings

from workers.queues import DEFAULT_QUEUE, QUEUES


def sqs_queue_name(queue: str) -> str:
    return f"{settings.SQS_QUEUE_PREFIX}{queue}"


def dead_letter_queue_name(queue: str) -> str:
    return f"{sqs_queue_name(queue)}-dlq"


def predefined_queues() -> dict[str, dict[str, str]]:
    """kombu's predefined_queues, keyed by the full SQS queue name, when a URL base is set."""
    base = settings.SQS_QUEUE_URL_BASE
    if not base:
        return {}
    base = base.rstrip("/") + "/"
    return {sqs_queue_name(q): {"url": base + sqs_queue_name(q)} for q in QUEUES}


# What SQS answers about a queue that does not exist (the JSON and the query protocol).
_MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def names_missing_queue(error: str | None) -> bool:
    """Whether a recorded error (an exception's class, or "Class: message") is SQS saying a
    queue does not exist: its error code, or the code's last part, is in it."""
    return any(code.rsplit(".", 1)[-1] in (error or "") for code in _MISSING_QUEUE_CODES)


def missing_queue_text(exc: BaseException, name: str) -> str | None:
    """Words for an SQS error saying the queue `name` does not exist, or None for any other
    error: its raw form ("NonExistentQueue … when calling GetQueueAttributes") read as an
    outage, and nothing said how to make the queue again."""
    if not isinstance(exc, ClientError):
        return None
    if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE_CODES:
        return None
    return (
        f"The SQS queue {name} does not exist (deleted, or the SQS endpoint was restarted "
        "empty): make the queues again with `manage.py sqs_queues`, or deploy the stack."
    )


def broker_probe() -> None:
    """One cheap SQS call against the default queue; raises if SQS cannot be reached."""
    sqs = _probe_client(settings.AWS_REGION, os.environ.get("AWS_ENDPOINT_URL_SQS", ""))
    name = sqs_queue_name(DEFAULT_QUEUE)
    predefined = predefined_queues()
    url = predefined[name]["url"] if predefined else _queue_url(sqs, name)
    sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])


@lru_cache(maxsize=16)
def _queue_url(sqs: Any, name: str) -> str:
    # Looked up once per client: a probe is then one call, so one timeout, not two.
    return str(sqs.get_queue_url(QueueName=name)["QueueUrl"])


@lru_cache(maxsize=4)
def _probe_client(region: str, endpoint_env: str) -> Any:
    # Cached because creating a boto3 client costs tens of milliseconds; keyed by the
    # endpoint variable so a changed endpoint gets a new client.
    return boto3.client(
        "sqs",
        region_name=region,
        config=Config(
            connect_timeout=settings.CELERY_BROKER_TRANSPORT_OPTIONS["client-config"][
                "connect_timeout"
            ],
            # A person's request waits on this at most once per HEALTH_TTL_SECONDS; SQS
            # answers GetQueueAttributes in milliseconds when it is there at all.
            read_timeout=3,
            # One attempt: botocore's max_attempts counts retries, total_max_attempts all.
            retries={"mode": "standard", "total_max_attempts": 1},
        ),
    )
