"""Jobs whose message went with its SQS queue.

A queue deleted and made again (by hand, by a stack torn down and deployed again, or a local
endpoint restarted empty) starts empty: the messages of jobs sent to the queue it replaced
are gone. Such a job read "Queued" until the job list stopped counting it, 7 days on, and
the operations page's wait time kept growing. The depth sample reads each queue's
CreatedTimestamp; a job still queued that was sent before that moment can never be
delivered, so it is ended FAILURE saying why, and Retry sends it again. A copy a worker
had already taken before the queue went is dropped when it starts (the job ended), so the
job still runs once: through its Retry.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from celery import states
from django.db import transaction
from django_celery_results.models import TaskResult

from workers.bookkeeping import job_finish
from workers.broker import sqs_queue_name
from workers.errors import job_failure
from workers.models import Job, QueueDepth
from workers.reconcile import job_ended_unseen

logger = logging.getLogger(__name__)

# CreatedTimestamp is in whole seconds, and SQS's clock is not the database's.
CLOCK_TOLERANCE = timedelta(seconds=2)


def jobs_lost_with_their_queue_record(*, depths: list[QueueDepth]) -> int:
    """End every queued job sent to a queue before SQS made it (again); how many were."""
    ended = 0
    for depth in depths:
        if depth.queue_created_at is not None and not depth.error:
            ended += _end_lost(depth.queue, depth.queue_created_at)
    return ended


def _end_lost(queue: str, created_at: datetime) -> int:
    lost = Job.objects.filter(
        queue=queue,
        sent_at__lt=created_at - CLOCK_TOLERANCE,
        task_id__in=TaskResult.objects.filter(status=states.PENDING).values("task_id"),
    ).values_list("task_id", "sent_at")
    ended = 0
    for task_id, sent_at in lost:
        # A clause, as the domain rows' handlers word a reason into their own message.
        cause = (
            f"its message was lost with the SQS queue {sqs_queue_name(queue)}: the queue was "
            f"made again at {created_at:%Y-%m-%d %H:%M:%S} UTC, after this job was sent "
            f"({sent_at:%Y-%m-%d %H:%M:%S} UTC), and a queue made again starts empty"
        )
        reason = f"{cause[0].upper()}{cause[1:]}. Nothing ran; Retry sends it again."
        with transaction.atomic():
            result = (
                TaskResult.objects.select_for_update()
                .filter(task_id=task_id, status=states.PENDING)
                .first()
            )
            if result is None:
                continue  # started or ended meanwhile
            job_finish(
                task_id=task_id,
                status=states.FAILURE,
                result=job_failure("MessageLost", reason, __name__),
                traceback=reason,
            )
            # Its record too (a terraform run, a database action, a release, a cover): it
            # read "queued" for good, and a queued terraform run held its workspace.
            job_ended_unseen(task_name=result.task_name, task_id=task_id, reason=cause)
            ended += 1
    if ended:
        logger.warning("%d queued job(s) of %s lost with their queue; ended FAILURE", ended, queue)
    return ended
