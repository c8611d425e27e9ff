"""Worker heartbeats in the database: what the operations page shows as "workers last seen".

Every worker process upserts its own row from a small thread, monitoring channel or not, so
the page knows which workers run, on which queues, even when Flower and Redis are down.

The thread outliving the consumer proves nothing (kombu issue 1127: a consumer loop can die
while the process lives on), so each row also says when the consumer last received from SQS,
and a second thread, which never touches the database, is the worker's watchdog: once its
consumer has been silent for WORKER_CONSUMER_EXIT_SECONDS it stops the worker with exit code
3, for its supervisor (ECS, compose, `make run`) to start a fresh one, unless it is running
jobs and its consumer still polls (SQS is down: a fresh worker would meet the same outage).
While the consumer is alive it touches WORKER_LIVENESS_FILE, which the container health check
reads (workers/liveness.py).
"""

from __future__ import annotations

import logging
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from workers.models import WorkerHeartbeat
from workers.monitoring import monitor_url
from workers.sqs_transport import Transport as WatchedTransport
from workers.sqs_transport import consumer_liveness
from workers.thread_steps import ThreadStep

logger = logging.getLogger(__name__)

# Rows of workers gone this long are removed when any worker starts.
FORGET_AFTER = timedelta(days=7)
# The worker's exit code when it stops because its consumer stalled.
EXIT_CONSUMER_STALLED = 3


@transaction.atomic
def worker_heartbeat_record(
    *,
    hostname: str,
    pid: int,
    queues: list[str],
    concurrency: int,
    active: int,
    processed: int,
    monitored: bool,
    started_at: datetime,
    last_receive_at: datetime | None = None,
    queue_receives: dict[str, datetime] | None = None,
) -> WorkerHeartbeat:
    heartbeat, _ = WorkerHeartbeat.objects.update_or_create(
        hostname=hostname,
        defaults={
            "pid": pid,
            "queues": queues,
            "concurrency": concurrency,
            "active": active,
            "processed": processed,
            "monitored": monitored,
            "started_at": started_at,
            "last_seen_at": timezone.now(),
            "last_receive_at": last_receive_at,
            "queue_receives": {
                queue: at.isoformat() for queue, at in (queue_receives or {}).items()
            },
        },
    )
    return heartbeat


def worker_heartbeats_forget(*, older_than: timedelta = FORGET_AFTER) -> int:
    deleted, _ = WorkerHeartbeat.objects.filter(
        last_seen_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


# This process's recorder, for `heartbeat_soon`.
_recorder: HeartbeatRecorder | None = None


def heartbeat_soon() -> None:
    """Record this worker's heartbeat now, not at the next beat: what the row says changed
    (a queue paused or resumed), and the operations page showed the old queues for up to
    WORKER_HEARTBEAT_SECONDS, a resumed queue as still paused."""
    if _recorder is not None:
        _recorder.nudge()


class HeartbeatRecorder(ThreadStep):
    """Consumer step: a thread that records this worker's heartbeat row."""

    thread_name = "heartbeat-recorder"
    # Through a warm shutdown the worker still runs jobs: it must not look gone (the
    # reconciler would end them "worker lost").
    drain = True

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.consumer = c
        self.started_at = timezone.now()
        super().__init__(c, **kwargs)

    def start(self, c: Consumer) -> None:
        global _recorder
        _recorder = self
        super().start(c)

    def _run(self) -> None:
        interval = settings.WORKER_HEARTBEAT_SECONDS
        failing = False
        self._forget_old()
        while True:
            try:
                self._record()
            except DatabaseError as exc:
                if not failing:
                    logger.warning("worker heartbeat: cannot record (%r); will retry", exc)
                failing = True
            else:
                failing = False
            finally:
                # No connection stays open between beats: pool processes forked meanwhile
                # would inherit its socket.
                connection.close()
            if not self._tick(interval):
                return

    def _forget_old(self) -> None:
        try:
            worker_heartbeats_forget()
        except DatabaseError as exc:
            logger.warning("worker heartbeat: cannot prune old rows (%r)", exc)

    def _record(self) -> None:
        c = self.consumer
        worker_heartbeat_record(
            hostname=c.hostname,
            pid=os.getpid(),
            queues=sorted(c.app.amqp.queues.consume_from),
            concurrency=int(getattr(c.pool, "num_processes", 0) or 0),
            active=len(worker_state.active_requests),
            processed=sum(worker_state.total_count.values()),
            monitored=bool(monitor_url()),
            started_at=self.started_at,
            last_receive_at=_as_datetime(consumer_liveness.last_receive_wall()),
            queue_receives={
                queue: datetime.fromtimestamp(at, tz=UTC)
                for queue, at in consumer_liveness.queue_receives_wall().items()
            },
        )


class ConsumerWatchdog(ThreadStep):
    """Consumer step: a thread that dates the liveness file with the consumer's last receive
    and stops the worker once its consumer has been silent too long. Its own thread, never
    the heartbeat's: a database that hangs (a failover that black-holes connections) held
    the heartbeat's write, the file went stale and a worker still consuming was replaced."""

    thread_name = "consumer-watchdog"
    # Through a warm shutdown the file still says when the consumer last received.
    drain = True

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.consumer = c
        self._started = time.monotonic()
        self._outage_told = False
        super().__init__(c, **kwargs)

    def start(self, c: Consumer) -> None:
        self._started = time.monotonic()
        super().start(c)

    def _run(self) -> None:
        interval = settings.WORKER_HEARTBEAT_SECONDS
        while True:
            self._watch_consumer()
            if not self._tick(interval):
                return

    def _watch_consumer(self) -> None:
        if not self._consumer_watched():
            return
        if not self.consumer.app.amqp.queues.consume_from:
            # Every queue it was started for is paused: nothing to poll, so nothing to prove.
            # Stopped for it, its replacement would meet the same pause and stop in turn.
            consumer_liveness.resting()
        silent = consumer_liveness.silent_for()
        if silent is None:
            silent = time.monotonic() - self._started
        limit = settings.WORKER_CONSUMER_EXIT_SECONDS
        proof = silent
        turned = consumer_liveness.turned_for()
        running = len(worker_state.active_requests)
        if running and turned is not None:
            # While it runs jobs, a poll SQS refused proves the consumer alive too: a fresh
            # worker would meet the same outage, and replacing this one kills what it runs
            # (ECS kills a container at most 120 s after stopping it: a terraform apply
            # mid-way, its state lock held). Once its jobs end, silence stops it as before.
            proof = min(silent, turned)
        if proof < limit:
            if silent >= limit and not self._outage_told:
                logger.warning(
                    "SQS unreachable for %.0fs; %d job(s) still running: this worker stays "
                    "healthy until they end",
                    silent,
                    running,
                )
            self._outage_told = silent >= limit
            self._touch_liveness_file(time.time() - proof)
            return
        if worker_state.should_stop is None:
            logger.error(
                "worker consumer silent for %.0fs (limit %gs): stopping with exit code %d so "
                "that a fresh worker replaces this one",
                silent,
                limit,
                EXIT_CONSUMER_STALLED,
            )
            # Celery's own flag, checked by the event loop: a warm shutdown that lets
            # running tasks finish, then exits with this code.
            worker_state.should_stop = EXIT_CONSUMER_STALLED

    def _consumer_watched(self) -> bool:
        # Only our transport reports receives; any other would look silent forever.
        conn = self.consumer.connection
        return conn is not None and isinstance(conn.transport, WatchedTransport)

    @staticmethod
    def _touch_liveness_file(proof: float) -> None:
        """Date the file when the consumer last proved alive, not now: the health check
        then fails WORKER_CONSUMER_EXIT_SECONDS after the consumer went silent. Touched
        now, the file stayed fresh until the watchdog's limit and stale only as long
        again after it: twice the limit for a worker that cannot stop itself."""
        path = settings.WORKER_LIVENESS_FILE
        if path:
            try:
                Path(path).touch()
                os.utime(path, (proof, proof))
            except OSError as exc:
                logger.warning("worker liveness file %s: %r", path, exc)


def _as_datetime(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, tz=UTC)
