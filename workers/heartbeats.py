"""Worker heartbeats in the database: what the operations page shows as "workers last seen".

Every worker process upserts its own row from a small thread, monitoring channel or not, so
the page knows which workers run, on which queues, even when Flower and Redis are down.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timedelta
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from workers.models import WorkerHeartbeat
from workers.monitoring import monitor_url

logger = logging.getLogger(__name__)

# Rows of workers gone this long are removed when any worker starts.
FORGET_AFTER = timedelta(days=7)


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
        },
    )
    return heartbeat


def worker_heartbeats_forget(*, older_than: timedelta = FORGET_AFTER) -> int:
    deleted, _ = WorkerHeartbeat.objects.filter(
        last_seen_at__lt=timezone.now() - older_than
    ).delete()
    return deleted


class HeartbeatRecorder(bootsteps.StartStopStep):
    """Consumer step: a thread that records this worker's heartbeat row."""

    requires = ("celery.worker.consumer.connection:Connection",)

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.consumer = c
        self.started_at = timezone.now()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Consumer) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="heartbeat-recorder", daemon=True)
        self._thread.start()

    def stop(self, c: Consumer) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    shutdown = stop

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
            if self._stopping.wait(interval):
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
        )
