"""Publishing recorded jobs to the broker without making the request wait for it.

A job is recorded (Job + PENDING TaskResult) in the same transaction as the caller's domain
row: that record is the outbox. After commit, the message goes to this process's relay, a
background thread that publishes it and marks the job sent. A web request therefore never
waits on an SQS round trip, and a broker that fails mid-flight loses nothing: the relay
retries with backoff, and `job_republish_unsent` (a periodic task) picks up what a process
that died before publishing left behind. Tasks are idempotent, so the rare double publish
(sent, then the process died before marking it) is harmless.

`BrokerHealth` lets the enqueue path refuse work while the broker is known to be down,
probing it at most every few seconds, so a person sees a clear error instead of a job that
sits unsent.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import queue
import threading
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import Task, states
from django.db import close_old_connections, connection
from django.utils import timezone
from django_celery_results.models import TaskResult
from kombu.exceptions import KombuError, OperationalError

from workers.broker import broker_probe
from workers.models import Job

logger = logging.getLogger(__name__)

BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    KombuError,
    BotoCoreError,
    ClientError,
    OSError,
)

# How long a successful publish or probe vouches for the broker.
HEALTH_TTL_SECONDS = 10.0
MAX_BACKOFF_SECONDS = 30.0
# Jobs sent back to back before their "sent" marks are written in one UPDATE.
MAX_BATCH = 50
# The longest SQS holds a message back before any consumer may receive it (DelaySeconds).
MAX_SQS_DELAY_SECONDS = 900


class BrokerUnavailable(Exception):
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
    options = dict(job.options)
    delay = sqs_delay_seconds(job.run_after)
    if delay:
        # kombu's SQS transport passes this message property on as DelaySeconds.
        options["delay_seconds"] = delay
    job.task.apply_async(
        args=job.args, kwargs=job.kwargs, task_id=job.task_id, retry=False, **options
    )


def sqs_delay_seconds(run_after: datetime | None) -> int:
    """Whole seconds SQS should hold a message back so it starts no earlier than run_after
    (rounded up; at most SQS's limit, beyond which a clocked beat entry waits instead)."""
    if run_after is None:
        return 0
    remaining = (run_after - timezone.now()).total_seconds()
    return max(0, min(MAX_SQS_DELAY_SECONDS, math.ceil(remaining)))


class BrokerHealth:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._confirmed_at = float("-inf")
        self._error: str | None = None

    def confirm(self) -> None:
        with self._lock:
            self._confirmed_at = time.monotonic()
            self._error = None

    def fail(self, exc: BaseException) -> None:
        with self._lock:
            self._error = f"{exc.__class__.__name__}: {exc}"

    def reset(self) -> None:
        with self._lock:
            self._confirmed_at = float("-inf")
            self._error = None

    def ensure_available(self) -> None:
        """Return if the broker is believed reachable; else raise BrokerUnavailable."""
        with self._lock:
            error = self._error
            fresh = time.monotonic() - self._confirmed_at < HEALTH_TTL_SECONDS
        if error is None and fresh:
            return
        try:
            broker_probe()
        except BROKER_ERRORS as exc:
            self.fail(exc)
            raise BrokerUnavailable(
                f"The job queue is unreachable ({exc.__class__.__name__}), so nothing was "
                "queued and nothing was changed. Try again once the broker is back."
            ) from exc
        self.confirm()


class Relay:
    """One background publisher per process (re-created after a fork)."""

    def __init__(self, health: BrokerHealth) -> None:
        self.health = health
        self._pid: int | None = None
        self._queue: queue.Queue[OutboundJob] = queue.Queue()
        self._unsent = 0
        self._unsent_changed = threading.Condition()
        self._start_lock = threading.Lock()

    def submit(self, job: OutboundJob) -> None:
        self._ensure_thread()
        with self._unsent_changed:
            self._unsent += 1
        self._queue.put(job)

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait until everything submitted so far is published; False on timeout."""
        if self._pid != os.getpid():
            return True
        with self._unsent_changed:
            return self._unsent_changed.wait_for(lambda: self._unsent == 0, timeout)

    def _ensure_thread(self) -> None:
        if self._pid == os.getpid():
            return
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits the parent's queue but not its thread: start afresh.
            self._queue = queue.Queue()
            self._unsent = 0
            thread = threading.Thread(target=self._run, name="opsqueue-relay", daemon=True)
            thread.start()
            self._pid = os.getpid()
            atexit.register(self.drain)

    def _run(self) -> None:
        while True:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            for job in batch:
                self._publish_until_sent(job)
            self._mark_sent([job.task_id for job in batch], idle=self._queue.empty())
            with self._unsent_changed:
                self._unsent -= len(batch)
                self._unsent_changed.notify_all()

    def _publish_until_sent(self, job: OutboundJob) -> None:
        backoff = 0.5
        while True:
            try:
                publish_now(job)
            except BROKER_ERRORS as exc:
                self.health.fail(exc)
                logger.warning(
                    "job %s [%s] not sent yet, retrying in %.1fs: %r",
                    job.task.name,
                    job.task_id,
                    backoff,
                    exc,
                )
                time.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            except Exception:
                # Not the broker: the message itself cannot be sent (e.g. an argument that
                # does not serialize). Retrying cannot help, and the relay must live on.
                logger.exception("job %s [%s] cannot be sent", job.task.name, job.task_id)
                self._mark_unsendable(job.task_id, traceback.format_exc())
                return
            self.health.confirm()
            return

    @staticmethod
    def _mark_unsendable(task_id: str, trace: str) -> None:
        try:
            close_old_connections()
            TaskResult.objects.filter(task_id=task_id, status=states.PENDING).update(
                status=states.FAILURE, traceback=trace, date_done=timezone.now()
            )
        except Exception:
            logger.exception("could not record that job %s cannot be sent", task_id)

    @staticmethod
    def _mark_sent(task_ids: list[str], *, idle: bool) -> None:
        try:
            close_old_connections()
            Job.objects.filter(task_id__in=task_ids).update(sent_at=timezone.now())
        except Exception:
            # The messages are out; only the bookkeeping failed. The sweeper may send them
            # again, which an idempotent task shrugs off.
            logger.exception("could not mark jobs %s as sent", task_ids)
        finally:
            if idle:
                # This thread's connection must not sit open while there is nothing to
                # do (it counts against the server's limit and blocks dropping a database).
                connection.close()


broker_health = BrokerHealth()
relay = Relay(broker_health)
