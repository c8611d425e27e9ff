"""Keep the messages a worker holds invisible to other workers for as long as it holds them.

Queues have a short visibility timeout (SQS_VISIBILITY_TIMEOUT_SECONDS): a worker that dies
stops extending, and its messages, running or prefetched, are delivered again within about
that long. While it lives, this consumer step's thread pushes the timeout of every message
it has received and not yet acknowledged another full timeout into the future, every third
of the timeout, so a long job is never delivered to a second worker. A second thread renews
the claims its processes hold on those jobs (workers/claims.py) at the same pace.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from celery.worker.consumer import Consumer
from django.conf import settings
from django.db import DatabaseError, connection

from workers.claims import job_claims_renew
from workers.thread_steps import ThreadStep, held_requests

logger = logging.getLogger(__name__)


def held_receipts() -> dict[str, list[str]]:
    """Receipt handles of the SQS messages this worker holds, by queue URL."""
    held: dict[str, list[str]] = defaultdict(list)
    for request in held_requests():
        info = getattr(request.message, "delivery_info", None) or {}
        sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
        if sqs_message and queue_url:
            held[queue_url].append(sqs_message["ReceiptHandle"])
    return held


# What SQS answers for a receipt handle whose message was deleted or is visible again.
HANDLE_GONE = ("ReceiptHandleIsInvalid", "InvalidParameterValue", "MessageNotInflight")


class VisibilityExtender(ThreadStep):
    """Consumer step: a thread that extends the visibility of held messages."""

    thread_name = "visibility-extender"
    drain = True  # running jobs keep their messages through a warm shutdown

    def _run(self) -> None:
        timeout = settings.SQS_VISIBILITY_TIMEOUT_SECONDS
        sqs = boto3.client(
            "sqs",
            region_name=settings.AWS_REGION,
            config=Config(
                connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
            ),
        )
        while self._tick(timeout / 3):
            self.extend(sqs, timeout)

    @staticmethod
    def extend(sqs: Any, timeout: int) -> int:
        extended = 0
        for queue_url, receipts in held_receipts().items():
            for receipt in receipts:
                try:
                    sqs.change_message_visibility(
                        QueueUrl=queue_url, ReceiptHandle=receipt, VisibilityTimeout=timeout
                    )
                except ClientError as exc:
                    error = exc.response.get("Error", {})
                    code = str(error.get("Code", ""))
                    # The query protocol's codes may come prefixed (AWS.SimpleQueueService.…).
                    if code.rsplit(".", 1)[-1] in HANDLE_GONE:
                        # Acknowledged meanwhile (the handle is gone): nothing left to keep.
                        logger.debug(
                            "visibility of a message in %s not extended: %r", queue_url, exc
                        )
                    else:
                        # SQS refused (a 5xx, throttling): the message will be shown again
                        # while its job runs. Said, not left at debug level as a handle gone.
                        logger.warning(
                            "visibility in %s not extended (%s: %s); will retry",
                            queue_url,
                            code,
                            error.get("Message", ""),
                        )
                except BotoCoreError as exc:
                    logger.warning("visibility in %s not extended (%r); will retry", queue_url, exc)
                else:
                    extended += 1
        return extended


class ClaimRenewer(ThreadStep):
    """Consumer step: a thread that renews the claims this worker's processes hold.

    Apart from the extender: while SQS hangs, extending each held message waits out its
    timeouts (some 20 s a message), and renewals made between those rounds came too late;
    a live job's lease ran out, and once SQS answered again its message, visible again, was
    run a second time beside the first by whichever worker received it. Renewed here from
    the database alone, the lease holds through an SQS outage, and a delivery after it is
    dropped as a duplicate."""

    thread_name = "claim-renewer"
    drain = True  # running jobs keep their claims through a warm shutdown

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.hostname = c.hostname
        super().__init__(c, **kwargs)

    def _run(self) -> None:
        while self._tick(settings.SQS_VISIBILITY_TIMEOUT_SECONDS / 3):
            self._renew_claims()

    def _renew_claims(self) -> None:
        task_ids = list({request.id for request in held_requests()})
        if not task_ids:
            return
        try:
            job_claims_renew(task_ids=task_ids, hostname=self.hostname)
        except DatabaseError as exc:
            logger.warning("job claims not renewed (%r); will retry", exc)
        finally:
            # Pool processes forked meanwhile must not inherit an open connection.
            connection.close()
