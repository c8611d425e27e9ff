"""Broker facts shared by the Celery app, the dev stack and the queue management command."""

from __future__ import annotations

from django.conf import settings

from workers.queues import QUEUES


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
