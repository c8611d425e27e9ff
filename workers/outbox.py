"""Publishing recorded jobs to the broker without making the request wait for it.

A job is recorded (Job + PENDING TaskResult) in the same transaction as the caller's domain
row: that record is the outbox. After commit, the message goes to this process's relay, a
background thread that publishes it (with SendMessageBatch, ten per request: see
workers/sqs_batch.py) and marks the job sent. A web request therefore never
waits on an SQS round trip, and a broker that fails mid-flight loses nothing: the relay
retries with backoff, and `job_republish_unsent` (a periodic task) picks up what a process
that died before publishing left behind. A retry holds the jobs' rows, as the sweeper does,
so the two never both send a job after a long outage. Tasks are idempotent, so the rare
double publish (sent, then the process died before marking it) is harmless.

`BrokerHealth` lets the enqueue path refuse work while the broker is known to be down,
probing it at most every few seconds, so a person sees a clear error instead of a job that
sits unsent.
"""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import Task, states
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult
from kombu import Producer
from kombu.exceptions import KombuError, OperationalError, SerializationError

from workers.broker import broker_probe, names_missing_queue
from workers.errors import ApplicationError, job_failure
from workers.message_templates import templates_for, templating_allowed
from workers.models import Job
from workers.service_health import HEALTH_TTL_SECONDS, ServiceHealth, error_kind
from workers.sqs_batch import MAX_ENTRIES, SqsMessage, recording_producer, send_batches

logger = logging.getLogger(__name__)

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    KombuError,
    BotoCoreError,
    ClientError,
    OSError,
)


def broker_unreachable(exc: BaseException) -> bool:
    """Whether `exc`, met sending a job, says the broker could not take it (send it again
    later) rather than that the job's own message is at fault: a SerializationError is a
    KombuError too, and any other error (arguments that do not fit the task) is the job's,
    and would come back at every attempt."""
    return isinstance(exc, BROKER_ERRORS) and not isinstance(exc, SerializationError)


MAX_BACKOFF_SECONDS = 30.0
# Jobs the relay takes into one batch: sent ten per SQS request, their "sent" marks
# written in one UPDATE.
MAX_BATCH = 50
# While jobs keep coming (the last batch began less than BUSY_WINDOW_SECONDS ago), how long
# the relay waits for more once it holds one, to send fuller batches.
LINGER_SECONDS = 0.05
BUSY_WINDOW_SECONDS = 0.5
# How long the relay keeps its database connection open with nothing to send. Closing it
# after every batch cost ~1 ms of the web process and ~2 ms of PostgreSQL (a new backend)
# per batch under load, a third of what publishing a job costs (bench/dispatch.py).
IDLE_CONNECTION_SECONDS = BUSY_WINDOW_SECONDS
# The longest SQS holds a message back before any consumer may receive it (DelaySeconds).
MAX_SQS_DELAY_SECONDS = 900


class BrokerUnavailable(ApplicationError):
    """The job could not be queued; nothing was recorded."""


@dataclass
class OutboundJob:
    task: Task
    task_id: str
    args: list[Any]
    kwargs: dict[str, Any]
    options: dict[str, Any] = field(default_factory=dict)
    # The earliest the job may start; the delay is worked out when the message is sent.
    run_after: datetime | None = None


def publish_now(job: OutboundJob) -> None:
    """Send one message; raises one of BROKER_ERRORS if the broker cannot take it."""
    job.task.apply_async(
        args=job.args, kwargs=job.kwargs, task_id=job.task_id, retry=False, **message_options(job)
    )


def job_unsendable_record(*, task_id: str, reason: str, trace: str | None = None) -> None:
    """End a queued job that can never be sent (its arguments do not fit its task or do not
    serialize; SQS refuses its message for good) as FAILURE, its page saying why. Sending
    it again would fail the same way."""
    TaskResult.objects.filter(task_id=task_id, status=states.PENDING).update(
        status=states.FAILURE,
        # Stored as a worker stores an exception, so the job page shows the reason as the
        # job's error, not a bare "Failed".
        result=json.dumps(job_failure("JobNotSent", reason, __name__)),
        traceback=trace or reason,
        date_done=timezone.now(),
    )


def sqs_delay_seconds(run_after: datetime | None) -> int:
    """Whole seconds SQS should hold a message back so it starts no earlier than run_after
    (rounded up; at most SQS's limit, beyond which a clocked beat entry waits instead)."""
    if run_after is None:
        return 0
    remaining = (run_after - timezone.now()).total_seconds()
    return max(0, min(MAX_SQS_DELAY_SECONDS, math.ceil(remaining)))


def message_options(job: OutboundJob) -> dict[str, Any]:
    """The job's `apply_async` options, with the SQS delay its run_after needs now."""
    options = dict(job.options)
    delay = sqs_delay_seconds(job.run_after)
    if delay:
        # kombu's SQS transport passes this message property on as DelaySeconds.
        options["delay_seconds"] = delay
    return options


def encode_for_sqs(
    jobs: list[OutboundJob],
) -> tuple[list[tuple[OutboundJob, SqsMessage]], list[tuple[OutboundJob, str]]]:
    """Each job's SQS message as `apply_async` would send it, without sending it; and the
    jobs that cannot be encoded (e.g. an argument that does not serialize), with why.
    Raises one of BROKER_ERRORS if SQS cannot be asked for a queue's URL.

    Messages of a shape already seen are filled in from a template Celery made
    (workers/message_templates.py), about a quarter of the CPU (bench/message_encoding.py)."""
    encoded: list[tuple[OutboundJob, SqsMessage]] = []
    unencodable: list[tuple[OutboundJob, str]] = []
    app = jobs[0].task.app
    with app.producer_or_acquire() as producer, recording_producer(producer) as recorded:
        templates = templates_for(producer) if templating_allowed(app, producer) else None
        for job in jobs:
            options = message_options(job)
            by_celery = partial(encode_by_celery, job, options, producer, recorded)
            try:
                message = (
                    by_celery() if templates is None else templates.encode(job, options, by_celery)
                )
            except Exception as exc:
                if broker_unreachable(exc):
                    raise
                unencodable.append((job, traceback.format_exc()))
                continue
            finally:
                recorded.clear()  # also what a failed apply_async left
            encoded.append((job, message))
    return encoded, unencodable


def encode_by_celery(
    job: OutboundJob, options: dict[str, Any], producer: Producer, recorded: list[SqsMessage]
) -> SqsMessage:
    """`job`'s message as `apply_async` makes it, through `producer` recording into
    `recorded` (workers/sqs_batch.recording_producer)."""
    job.task.apply_async(
        args=job.args,
        kwargs=job.kwargs,
        task_id=job.task_id,
        retry=False,
        producer=producer,
        **options,
    )
    (message,) = recorded  # one apply_async, one message
    return message


class BrokerHealth(ServiceHealth):
    """What this process knows of SQS (see ServiceHealth), and of job queues whose SQS
    queue a send lately found missing: one missing queue is not an outage, so it refuses
    that queue's jobs only, and the others' are queued and sent as before."""

    errors = BROKER_ERRORS

    def __init__(self) -> None:
        super().__init__()
        self._missing: dict[str, tuple[float, str]] = {}  # queue -> (when, SQS's error)

    def probe(self) -> None:
        broker_probe()

    def refusal(self, error: str | None) -> ApplicationError:
        return BrokerUnavailable(unreachable_message(error))

    def queue_missing(self, queue: str, error: str) -> None:
        with self._lock:
            self._missing[queue] = (time.monotonic(), error)

    def queue_found(self, queue: str) -> None:
        if queue not in self._missing:  # the relay asks for every job it sends: no lock
            return
        with self._lock:
            self._missing.pop(queue, None)

    def missing_queue_error(self, queue: str | None = None) -> str | None:
        """SQS's error if a send to `queue` (to any queue, if None) lately found its SQS queue
        missing. Lately, as any failure counts (HEALTH_TTL_SECONDS): this process cannot see
        the queue made again, so a job sent after that tries again."""
        if not self._missing:  # every job_enqueue asks: no lock while none is missing
            return None
        now = time.monotonic()
        with self._lock:
            for name, (at, error) in self._missing.items():
                if (queue is None or name == queue) and now - at < HEALTH_TTL_SECONDS:
                    return error
        return None

    def ensure_queue(self, queue: str) -> None:
        """Refuse a job for a queue lately found missing (after `ensure_available`)."""
        error = self.missing_queue_error(queue)
        if error is not None:
            raise BrokerUnavailable(unreachable_message(error, queue=queue))

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._missing.clear()


def unreachable_message(error: str | None, *, queue: str | None = None) -> str:
    kind = error_kind(error)
    if names_missing_queue(error):
        # Not an outage: waiting would not help (an endpoint restarted empty, a queue
        # deleted by hand).
        whose = f"The {queue} job queue's" if queue else "The job queue's"
        return (
            f"{whose} SQS queue does not exist ({kind}), so nothing was queued and "
            "nothing was changed. Make the queues again with `manage.py sqs_queues`, or "
            "deploy the stack."
        )
    return (
        f"The job queue is unreachable ({kind}), so nothing was queued and "
        "nothing was changed. Try again once the broker is back."
    )


def missing_queue_note(cause: str | None) -> str | None:
    """A page's banner when SQS answered that a queue does not exist (`cause`, as
    ServiceHealth.unreachable_cause gives it), else None. SQS is reachable then, so "SQS is
    unreachable ... until it is back" was wrong: waiting brings nothing back."""
    if not names_missing_queue(cause):
        return None
    return (
        "A job queue's SQS queue does not exist (deleted, or the SQS endpoint was restarted "
        "empty): its jobs wait, and new jobs may be refused, until the queues are made again "
        "with `manage.py sqs_queues` (or the stack is deployed)."
    )


class Relay:
    """One background publisher per process (re-created after a fork)."""

    def __init__(self, health: BrokerHealth) -> None:
        self.health = health
        self._pid: int | None = None
        self._new_pending()
        self._unsent = 0
        self._unsent_changed = threading.Condition()
        self._start_lock = threading.Lock()
        # Set while the relay holds no database connection (see _wait_for_jobs).
        self._connection_released = threading.Event()
        self._connection_released.set()

    def submit(self, *jobs: OutboundJob) -> None:
        """Hand jobs to the relay; jobs submitted together are sent in the same batches."""
        if not jobs:
            return
        self._ensure_thread()
        with self._unsent_changed:
            self._unsent += len(jobs)
        with self._pending_changed:
            self._pending.append(jobs)
            self._pending_count += len(jobs)
            # While the relay lingers for a fuller batch, it is woken once there is one, not
            # by every job: a wake-up per job cost a tenth of the relay's CPU and four
            # context switches per request in bench/dispatch.py.
            if not self._lingering or self._pending_count >= MAX_ENTRIES:
                self._pending_changed.notify()

    def _new_pending(self) -> None:
        """The jobs handed over and not yet taken into a batch, in order of submission."""
        self._pending: deque[tuple[OutboundJob, ...]] = deque()
        self._pending_count = 0
        self._lingering = False
        self._pending_changed = threading.Condition()

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is published; False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._unsent_changed:
            return self._unsent_changed.wait_for(lambda: self._unsent == 0, timeout)

    def settle(self, timeout: float = 10.0) -> bool:
        """`drain`, then wait until the relay has closed its database connection, which it
        does once idle (before the database is dropped, e.g. at the end of a test run);
        False on timeout."""
        if self._pid != os.getpid():
            return True
        deadline = time.monotonic() + timeout
        return self.drain(timeout) and self._connection_released.wait(
            max(0.0, deadline - time.monotonic())
        )

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits the parent's pending jobs (and perhaps a held lock) but
            # not its thread: start afresh.
            self._new_pending()
            self._unsent = 0
            self._connection_released = threading.Event()
            self._connection_released.set()
            thread = threading.Thread(target=self._run, name="opsqueue-relay", daemon=True)
            thread.start()
            self._pid = os.getpid()
            atexit.register(self.drain)

    def _run(self) -> None:
        last_batch_at = float("-inf")
        while True:
            batch = self._next_batch(last_batch_at)
            last_batch_at = time.monotonic()
            try:
                sent = self._publish_until_sent(batch)
                self._mark_sent(sent)
            except Exception:
                # A bug, not the broker (its errors are retried above). The thread must
                # outlive it, or this process would never publish again; the jobs stay
                # recorded as unsent, and the sweeper (job_republish_unsent) sends them.
                logger.exception(
                    "relay could not send %s; left to the unsent-job sweeper",
                    ", ".join(job.task_id for job in batch),
                )
                connection.close()
            finally:
                with self._unsent_changed:
                    self._unsent -= len(batch)
                    self._unsent_changed.notify_all()

    def _next_batch(self, last_batch_at: float) -> list[OutboundJob]:
        """Wait for jobs; return up to MAX_BATCH of them (jobs submitted together stay
        together)."""
        self._wait_for_jobs()
        with self._pending_changed:
            # Under load, requests hand jobs over one by one, each right after its commit,
            # and a batch would hold three or four (measured in bench/dispatch.py). Waiting
            # a moment for the next ones fills an SQS request (ten messages), which costs
            # the relay about as much CPU as encoding twenty jobs. A job that arrives
            # after a quiet spell goes out at once.
            if time.monotonic() - last_batch_at < BUSY_WINDOW_SECONDS:
                self._lingering = True
                self._pending_changed.wait_for(
                    lambda: self._pending_count >= MAX_ENTRIES, timeout=LINGER_SECONDS
                )
                self._lingering = False
            batch: list[OutboundJob] = []
            while self._pending and len(batch) < MAX_BATCH:
                batch.extend(self._pending.popleft())
            self._pending_count -= len(batch)
            return batch

    def _wait_for_jobs(self) -> None:
        """Wait until a job is pending (only this thread takes them). This thread's database
        connection must not sit open while there is nothing to do (it counts against the
        server's limit and blocks dropping a database): it is closed once no job has come
        for IDLE_CONNECTION_SECONDS, and kept between the batches of a busy spell."""
        with self._pending_changed:
            if self._pending_changed.wait_for(
                lambda: self._pending_count > 0, timeout=IDLE_CONNECTION_SECONDS
            ):
                self._connection_released.clear()
                return
        connection.close()
        self._connection_released.set()
        with self._pending_changed:
            self._pending_changed.wait_for(lambda: self._pending_count > 0)
        self._connection_released.clear()

    def _publish_until_sent(self, batch: list[OutboundJob]) -> list[str]:
        """Send `batch` ten per SQS request; return the task ids sent (still to be marked).
        A message SQS did not take is retried on its own (its batch-mates are not sent
        again) until it is sent, refused for good and recorded as a failed job, or sent by
        the unsent-job sweeper in the meantime (see `_send_again`)."""
        encoded, waited = self._encode_until_done(batch)
        sent: list[str] = []
        if waited:
            # SQS was out of reach while the jobs were encoded: the sweeper may have sent
            # some of them meanwhile.
            retry = self._send_again(encoded, alone=False)
        else:
            sent, retry = self._send(encoded, alone=False)
        backoff = 0.5
        while retry:
            logger.warning("retrying %d job(s) each alone in %.1fs", len(retry), backoff)
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
            retry = self._send_again(retry, alone=True)
        return sent

    def _send(
        self, encoded: list[tuple[OutboundJob, SqsMessage]], *, alone: bool
    ) -> tuple[list[str], list[tuple[OutboundJob, SqsMessage]]]:
        """One attempt: the task ids sent, and the jobs worth another try."""
        if not encoded:
            return [], []
        failures = send_batches([message for _, message in encoded], alone=alone)
        sent: list[str] = []
        retry: list[tuple[OutboundJob, SqsMessage]] = []
        missing: dict[str, list[str]] = {}
        for index, (job, message) in enumerate(encoded):
            failure = failures.get(index)
            queue = job.options.get("queue", "")
            if failure is None:
                sent.append(job.task_id)
                self.health.queue_found(queue)
            elif failure.refused:
                logger.error(
                    "job %s [%s] refused by SQS: %s", job.task.name, job.task_id, failure.reason
                )
                self._mark_unsendable(job.task_id, f"SQS refused the message: {failure.reason}")
            elif names_missing_queue(failure.reason):
                # Not an outage, and no retry here makes the queue again: retrying held
                # every other queue's jobs behind this one (and the broker's failure
                # refused them all). The job stays recorded as unsent; the unsent-job
                # sweeper sends it once the queue is made again.
                self.health.queue_missing(queue, failure.reason)
                missing.setdefault(queue, []).append(job.task_id)
            else:
                retry.append((job, message))
        for queue, task_ids in missing.items():
            logger.error(
                "%d job(s) not sent: the SQS queue of %s does not exist; left to the unsent-job "
                "sweeper: %s",
                len(task_ids),
                queue,
                ", ".join(task_ids),
            )
        if len(retry) < len(encoded):
            self.health.confirm()
        if retry:
            reason = failures[encoded.index(retry[0])].reason
            self.health.fail(reason)
            logger.warning(
                "%d job(s) not sent (%s): %s",
                len(retry),
                reason,
                ", ".join(job.task_id for job, _ in retry),
            )
        return sent, retry

    def _send_again(
        self, retry: list[tuple[OutboundJob, SqsMessage]], *, alone: bool
    ) -> list[tuple[OutboundJob, SqsMessage]]:
        """Another try at jobs that could not be sent before, holding the rows of each
        request's jobs while it is sent and they are marked: after a long outage the
        unsent-job sweeper may have sent them already (it too locks a row while it sends
        it), and a second message would start the job twice. A job the sweeper sent, or is
        sending now, is dropped. One request at a time, so a worker that receives a job at
        once waits on its row no longer than that request. Returns the jobs still to retry;
        after a request that sent nothing, the rest are not tried this time. If the
        database cannot be asked, a request's jobs are left to the sweeper, which finds
        them recorded as unsent."""
        size = 1 if alone else MAX_ENTRIES
        again: list[tuple[OutboundJob, SqsMessage]] = []
        for start in range(0, len(retry), size):
            chunk = retry[start : start + size]
            try:
                with transaction.atomic():
                    held = set(
                        Job.objects.select_for_update(skip_locked=True)
                        .filter(task_id__in=[job.task_id for job, _ in chunk], sent_at__isnull=True)
                        .values_list("task_id", flat=True)
                    )
                    mine = [(job, message) for job, message in chunk if job.task_id in held]
                    sent, failed = self._send(mine, alone=alone)
                    Job.objects.filter(task_id__in=sent).update(sent_at=timezone.now())
            except DatabaseError:
                logger.exception(
                    "could not hold jobs %s to send them again; left to the unsent-job sweeper",
                    ", ".join(job.task_id for job, _ in chunk),
                )
                connection.close()
                continue
            again += failed
            if failed and not sent:
                again += retry[start + size :]
                break
        return again

    def _encode_until_done(
        self, batch: list[OutboundJob]
    ) -> tuple[list[tuple[OutboundJob, SqsMessage]], bool]:
        """The batch's messages, and whether SQS had to be waited for to make them."""
        backoff = 0.5
        waited = False
        while True:
            try:
                encoded, unencodable = encode_for_sqs(batch)
            except BROKER_ERRORS as exc:
                # Encoding only reaches SQS to look a queue's URL up.
                self.health.fail(exc)
                logger.warning("jobs not sent yet, retrying in %.1fs: %r", backoff, exc)
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                waited = True
                continue
            for job, trace in unencodable:
                logger.error("job %s [%s] cannot be sent:\n%s", job.task.name, job.task_id, trace)
                self._mark_unsendable(job.task_id, trace.strip().splitlines()[-1], trace)
            return encoded, waited

    @staticmethod
    def _mark_unsendable(task_id: str, reason: str, trace: str | None = None) -> None:
        try:
            job_unsendable_record(task_id=task_id, reason=reason, trace=trace)
        except Exception:
            logger.exception("could not record that job %s cannot be sent", task_id)
            connection.close()

    @staticmethod
    def _mark_sent(task_ids: list[str]) -> None:
        # No health check (a round trip) per batch. The connection, kept through a busy
        # spell, may have been cut since the last batch (a failover, a restart): a failed
        # UPDATE is made once more on a new one.
        for attempt in (1, 2):
            try:
                Job.objects.filter(task_id__in=task_ids).update(sent_at=timezone.now())
                return
            except Exception:
                connection.close()
                if attempt == 2:
                    # The messages are out; only the bookkeeping failed. The sweeper may
                    # send them again, which an idempotent task shrugs off.
                    logger.exception("could not mark jobs %s as sent", task_ids)


broker_health = BrokerHealth()
relay = Relay(broker_health)
