"""Dead-letter queues: what is in them, which job each message was, and what to do with it.

A message lands in `<queue>-dlq` after five receives without success (the redrive policy),
or at once when a worker finds it is no Celery job at all (`dead_letter_now`, called from
the consumer): redelivering garbage five times only delays the same verdict.

On the operations page staff see each dead-letter queue's messages with the job they belong
to; those with "Can redrive or discard dead letters" send one back to its queue or delete it,
and each such action is recorded (`DeadLetterAction`: who, when, what). Sending a job back
starts it again, so it also needs the operate permission of the job's family, as starting it
does (workers/families.py); a message that is no job is never sent back. Discarding a job's
message discards the job: it will never run, so one that had not ended ends Cancelled
(REVOKED) saying why, with its domain row, and it is marked discarded as the Jobs
dashboard's discard marks it; so it needs the act permission of the job's family, as that
discard does (a message that is no job needs none).

Not every dead letter is a job that will never run. SQS moves a message after
maxReceiveCount receives whether or not its job is running: when ChangeMessageVisibility
fails (a partial SQS outage) a running job's message comes back every visibility timeout and
reaches the dead-letter queue while the job runs on, and may end. Discarding such a letter
deletes the message and leaves the job alone; one whose job has ended is not sent back (it
would run again: a failed job is retried from its page, under the retry rules).
"""

from __future__ import annotations

import base64
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from celery import states
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import DatabaseError, connection, transaction
from django.db.models import TextChoices
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers import families
from workers.bookkeeping import job_finish
from workers.broker import dead_letter_queue_name, sqs_queue_name
from workers.display import state_label
from workers.errors import ApplicationError, job_failure
from workers.job_actions import job_action_permission
from workers.models import DeadLetterAction, Job

logger = logging.getLogger(__name__)

REASON_ATTRIBUTE = "opsqueue-dead-letter-reason"
PEEK_LIMIT = 50
CLIENT_CONFIG = Config(
    connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2}
)
# The operations page asks while a person waits (and gunicorn's timeout runs): an answer in
# seconds, or the page says SQS did not answer.
PAGE_CLIENT_CONFIG = Config(
    connect_timeout=2, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 1}
)


class DeadLetterGone(ApplicationError):
    """The message is no longer in the dead-letter queue (acted on, or expired)."""


class DeadLetterRefused(ApplicationError):
    """This user may not send this message back (it is no job, not one they may start, or
    its job ended) or discard it (a job of a family they may not act on)."""


def redrive_refusal(
    task_name: str | None,
    user: AbstractBaseUser | AnonymousUser,
    *,
    job_ended: str | None = None,
) -> str | None:
    """Why `user` may not send back a dead letter of `task_name` (whose job ended in
    `job_ended`, if it did); None if they may."""
    if not task_name:
        return "it is no job: sent back, it would only come back here"
    if not families.job_startable(user, task_name):
        return f"you may not start {task_name} jobs"
    if job_ended:
        # A copy SQS moved while the job ran on: sent back, it would run the job again.
        return (
            f"its job already ended ({job_ended}); sent back it would run again "
            "(retry a failed job from its page)"
        )
    return None


def discard_refusal(task_name: str | None, user: Any) -> str | None:
    """Why `user` may not discard a dead letter of `task_name`; None if they may. Discarding
    a job's message may end the job (Cancelled), so it needs what the Jobs dashboard's
    discard needs: the act permission of the job's family (`workers.act_on_<family>_jobs`).
    Asked of every job's message, whatever the job is doing when the page is drawn: it may
    have stopped running by the time the button is pressed."""
    if task_name and not user.has_perm(job_action_permission(task_name)):
        return f"you may not discard {task_name} jobs"
    return None


class JobFate(TextChoices):
    """What became of a dead letter's job, seen when the letter is looked at or acted on."""

    NONE = "none", "no job record"
    WAITING = "waiting", "will not run unless sent back"
    RUNNING = "running", "running"
    ENDED = "ended", "ended"


def job_fates(task_ids: list[str]) -> dict[str, tuple[JobFate, str]]:
    """Each job's fate and, for one that ended, its state ("Succeeded (SUCCESS)"). A job
    runs while its claim is held (workers/claims.py), whatever SQS did with its message."""
    now = timezone.now()
    ended = dict(
        TaskResult.objects.filter(task_id__in=task_ids, status__in=states.READY_STATES).values_list(
            "task_id", "status"
        )
    )
    claimed = dict(Job.objects.filter(task_id__in=task_ids).values_list("task_id", "claimed_until"))
    fates: dict[str, tuple[JobFate, str]] = {}
    for task_id in task_ids:
        if task_id in ended:
            fates[task_id] = (JobFate.ENDED, state_label(str(ended[task_id])))
        elif task_id not in claimed:
            fates[task_id] = (JobFate.NONE, "")
        elif (until := claimed[task_id]) is not None and until > now:
            fates[task_id] = (JobFate.RUNNING, "")
        else:
            fates[task_id] = (JobFate.WAITING, "")
    return fates


@dataclass(frozen=True)
class DeadLetter:
    queue: str
    message_id: str
    sent_at: datetime | None
    # No receive count: SQS counts the looks this page takes (a receive each), so it would
    # rise every time someone opened the page.
    task_id: str | None
    task_name: str | None
    reason: str
    preview: str
    job: Job | None = None
    job_fate: JobFate = JobFate.NONE
    job_state: str = ""  # the state it ended in, if it did ("Succeeded (SUCCESS)")


@lru_cache(maxsize=8)
def _client(region: str, endpoint_env: str, for_page: bool) -> Any:
    # Keyed by the endpoint variable (boto3 reads it itself) so tests that move it get a
    # fresh client.
    config = PAGE_CLIENT_CONFIG if for_page else CLIENT_CONFIG
    return boto3.client("sqs", region_name=region, config=config)


def sqs_client(*, for_page: bool = False) -> Any:
    """The SQS client of dead-letter work; `for_page`: with the short timeouts of a page."""
    import os

    return _client(settings.AWS_REGION, os.environ.get("AWS_ENDPOINT_URL_SQS", ""), for_page)


def _url(client: Any, name: str) -> str:
    base = settings.SQS_QUEUE_URL_BASE
    if base:
        return base.rstrip("/") + "/" + name
    return str(client.get_queue_url(QueueName=name)["QueueUrl"])


def job_identity(body: str) -> tuple[str | None, str | None]:
    """(task id, task name) of a Celery message body as kombu puts it on SQS; Nones if the
    body is not one."""
    for decode in (lambda b: base64.b64decode(b, validate=True), lambda b: b.encode()):
        try:
            envelope = json.loads(decode(body))
            headers = envelope["headers"]
            return str(headers["id"]), str(headers["task"])
        except (ValueError, KeyError, TypeError):
            continue
    return None, None


def dead_letter_now(message: Any, reason: str) -> bool:
    """Move a message a worker cannot run to its dead-letter queue and acknowledge it.
    False if it could not be moved (the caller then falls back to rejecting it)."""
    info = message.delivery_info or {}
    sqs_message, queue_url = info.get("sqs_message"), info.get("sqs_queue")
    if not sqs_message or not queue_url:
        return False
    try:
        sqs_client().send_message(
            QueueUrl=f"{queue_url}-dlq",
            MessageBody=sqs_message["Body"],
            MessageAttributes={
                REASON_ATTRIBUTE: {"DataType": "String", "StringValue": reason[:1000]}
            },
        )
    except Exception as exc:
        logger.warning(
            "could not move a message of %s to its dead-letter queue: %r", queue_url, exc
        )
        return False
    message.ack()
    logger.error("moved a message of %s to its dead-letter queue: %s", queue_url, reason)
    task_id, _task_name = job_identity(sqs_message["Body"])
    if task_id:
        job_dead_lettered_record(task_id=task_id, reason=reason)
    return True


def job_dead_lettered_record(*, task_id: str, reason: str) -> int:
    """Say on a job that has not ended that its message is in the dead-letter queue, so
    its page does not read "Queued" for good (a job marked already keeps its first note;
    a redrive clears it). Called by the worker's consumer and by the depth sample: a
    database that cannot be reached costs a log line, not the consumer (the operations page
    lists the message all the same). Returns how many jobs it marked (0 or 1)."""
    try:
        with transaction.atomic():
            return (
                Job.objects.filter(task_id=task_id, dead_lettered_at__isnull=True)
                .exclude(
                    task_id__in=TaskResult.objects.filter(
                        task_id=task_id, status__in=states.READY_STATES
                    ).values("task_id")
                )
                .update(dead_lettered_at=timezone.now(), dead_letter_reason=reason[:1000])
            )
    except DatabaseError as exc:
        logger.warning("could not mark job %s as dead-lettered: %r", task_id, exc)
        connection.close()
        return 0


def dead_lettered_jobs_record(*, queues: list[str], client: Any = None) -> int:
    """Mark the jobs whose messages SQS moved to these queues' dead-letter queues itself:
    its redrive policy moves a message received five times without success and tells
    nobody, so such a job read "Queued" (or "Running", until the lost-job check) with no
    word of where its message went. Looks at up to PEEK_LIMIT messages per queue, as the
    operations page does; returns how many jobs it newly marked. Called with the queues
    whose dead-letter queue the depth sample found non-empty (workers/tasks.py)."""
    client = client or sqs_client()
    marked = 0
    for queue in queues:
        try:
            letters = dead_letters_list(queue=queue, client=client)
        except (BotoCoreError, ClientError) as exc:
            logger.warning("could not look at the %s dead-letter queue: %r", queue, exc)
            continue
        for letter in letters:
            if letter.job is not None and letter.job.dead_lettered_at is None:
                marked += job_dead_lettered_record(task_id=letter.job.task_id, reason=letter.reason)
    return marked


def dead_letters_list(
    *, queue: str, limit: int = PEEK_LIMIT, client: Any = None
) -> list[DeadLetter]:
    """The messages in `queue`'s dead-letter queue, without taking them out of it."""
    client = client or sqs_client()
    url = _url(client, dead_letter_queue_name(queue))
    seen: dict[str, DeadLetter] = {}
    receipts = []
    # Each receive hides what it returns for a moment so the next one returns others; all
    # are made visible again right after.
    while len(seen) < limit:
        batch = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=5,
            AttributeNames=["All"],
            MessageAttributeNames=[REASON_ATTRIBUTE],
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in seen]
        if not fresh:
            break
        for message in fresh:
            seen[message["MessageId"]] = _dead_letter(queue, message)
            receipts.append(message["ReceiptHandle"])
    for receipt in receipts:
        client.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0)
    letters = list(seen.values())
    task_ids = [d.task_id for d in letters if d.task_id]
    jobs = Job.objects.in_bulk(task_ids, field_name="task_id")
    fates = job_fates(task_ids)
    return [
        DeadLetter(
            **{
                **letter.__dict__,
                "job": jobs.get(letter.task_id or ""),
                "job_fate": fates.get(letter.task_id or "", (JobFate.NONE, ""))[0],
                "job_state": fates.get(letter.task_id or "", (JobFate.NONE, ""))[1],
            }
        )
        for letter in letters
    ]


def _dead_letter(queue: str, message: dict[str, Any]) -> DeadLetter:
    attributes = message.get("Attributes", {})
    sent = attributes.get("SentTimestamp")
    task_id, task_name = job_identity(message["Body"])
    reason = (
        message.get("MessageAttributes", {}).get(REASON_ATTRIBUTE, {}).get("StringValue")
        # No reason of ours: SQS's redrive policy moved it (deploy: maxReceiveCount 5).
        or "SQS moved it after it was received five times without success"
    )
    return DeadLetter(
        queue=queue,
        message_id=message["MessageId"],
        sent_at=datetime.fromtimestamp(int(sent) / 1000, tz=UTC) if sent else None,
        task_id=task_id,
        task_name=task_name,
        reason=reason,
        preview=message["Body"][:200],
    )


def _take(client: Any, url: str, message_id: str) -> dict[str, Any]:
    """Receive until the message with this id turns up; the others go back at once."""
    others = []
    try:
        for _ in range(20):
            batch = client.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30
            ).get("Messages", [])
            if not batch:
                break
            wanted = [m for m in batch if m["MessageId"] == message_id]
            others += [m["ReceiptHandle"] for m in batch if m["MessageId"] != message_id]
            if wanted:
                return dict(wanted[0])
        raise DeadLetterGone(f"message {message_id} is no longer in the dead-letter queue")
    finally:
        for receipt in others:
            client.change_message_visibility(
                QueueUrl=url, ReceiptHandle=receipt, VisibilityTimeout=0
            )


@transaction.atomic
def dead_letter_redrive(
    *, queue: str, message_id: str, user: AbstractBaseUser | AnonymousUser
) -> DeadLetterAction:
    """Send a dead letter back to its queue, as it was, and take it out of the DLQ.

    Not `job_enqueue`: the message keeps its task id, so it is the job already recorded
    (its Job and result rows) delivered again, not a new one; starting it needs what
    starting that job anywhere else needs (`redrive_refusal`). The audit row is written
    first, in the same transaction: if it cannot be written nothing is sent, and if SQS
    refuses the send it is rolled back."""
    client = sqs_client()
    dlq_url = _url(client, dead_letter_queue_name(queue))
    message = _take(client, dlq_url, message_id)
    task_id, task_name = job_identity(message["Body"])
    # Only an ended job has a state here.
    ended = job_fates([task_id])[task_id][1] if task_id else ""
    refusal = redrive_refusal(task_name, user, job_ended=ended or None)
    if refusal:
        # Back where it was, for someone who may.
        client.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
        raise DeadLetterRefused(f"Not sent back: {refusal}.")
    action = _record(DeadLetterAction.Kind.REDRIVE, queue, message, user)
    client.send_message(QueueUrl=_url(client, sqs_queue_name(queue)), MessageBody=message["Body"])
    client.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    if action.task_id:  # back on its queue: a worker may run it now
        Job.objects.filter(task_id=action.task_id).update(
            dead_lettered_at=None, dead_letter_reason=""
        )
    return action


@dataclass(frozen=True)
class Discarded:
    action: DeadLetterAction
    # What became of its job: WAITING, it was discarded with its message; RUNNING or
    # ENDED, it was left alone (`job_state`: the state it ended in).
    job_fate: JobFate
    job_state: str = ""


@transaction.atomic
def dead_letter_discard(
    *, queue: str, message_id: str, user: AbstractBaseUser | AnonymousUser
) -> Discarded:
    """Delete a dead letter for good (recorded first, as a redrive is); a job's message
    takes its job with it (`_job_discarded`) unless the job is running or has ended: that
    message was a copy SQS moved while the job ran on."""
    client = sqs_client()
    dlq_url = _url(client, dead_letter_queue_name(queue))
    message = _take(client, dlq_url, message_id)
    refusal = discard_refusal(job_identity(message["Body"])[1], user)
    if refusal:
        # Back where it was, for someone who may.
        client.change_message_visibility(
            QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
        raise DeadLetterRefused(f"Not discarded: {refusal}.")
    action = _record(DeadLetterAction.Kind.DISCARD, queue, message, user)
    outcome = Discarded(action, JobFate.NONE)
    if action.task_id:
        # Its claim cannot be taken while this looks: the row stays locked to the end.
        Job.objects.select_for_update().filter(task_id=action.task_id).first()
        fate, state = job_fates([action.task_id])[action.task_id]
        outcome = Discarded(action, fate, state)
        if fate in (JobFate.WAITING, JobFate.NONE):
            _job_discarded(action, user)
    client.delete_message(QueueUrl=dlq_url, ReceiptHandle=message["ReceiptHandle"])
    return outcome


def _job_discarded(action: DeadLetterAction, user: AbstractBaseUser | AnonymousUser) -> None:
    """The job whose message was discarded will never run: its page said "Queued" (or
    "Running", until the reconciler came) for good, and its domain row too."""
    from workers.reconcile import job_ended_unseen  # reconcile imports the operations page

    reason = (
        f"its message was discarded from the {action.queue} dead-letter queue "
        f"by {user.get_username()}"
    )
    result = TaskResult.objects.select_for_update().filter(task_id=action.task_id).first()
    if result is not None and result.status not in states.READY_STATES:
        job_finish(
            task_id=action.task_id,
            status=states.REVOKED,
            result=job_failure("DeadLetterDiscarded", reason),
        )
        job_ended_unseen(task_name=action.task_name, task_id=action.task_id, reason=reason)
    Job.objects.filter(task_id=action.task_id, discarded_at__isnull=True).update(
        discarded_at=timezone.now(), discarded_by_label=user.get_username()
    )


@transaction.atomic
def _record(
    kind: str, queue: str, message: dict[str, Any], user: AbstractBaseUser | AnonymousUser
) -> DeadLetterAction:
    task_id, task_name = job_identity(message["Body"])
    return DeadLetterAction.objects.create(
        kind=kind,
        queue=queue,
        message_id=message["MessageId"],
        task_id=task_id or "",
        task_name=task_name or "",
        user_id=user.pk,
        username=user.get_username(),
    )
