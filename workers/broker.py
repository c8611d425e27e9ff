"""Broker facts shared by the Celery app, the dev stack and the queue management command."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
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
