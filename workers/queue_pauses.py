"""Pausing a queue: every worker stops taking its jobs until it is resumed.

The pause is a row (QueuePause), so it holds for every worker, for workers that start later,
and without the monitoring channel: SQS carries no broadcast, and Redis may be down. Each
worker runs the `QueuePauses` consumer step: before its task consumer starts it leaves out
the paused queues it was started for, then it looks at the rows every few seconds and stops
or starts consuming (Celery's cancel_task_queue / add_task_queue, the handlers behind the
cancel_consumer / add_consumer remote-control commands) on its own event loop. Jobs sent
to a paused queue wait in SQS, PENDING, and run once the queue is resumed.

A job a worker had already received when the pause came finishes: pausing stops new work,
it cancels nothing.

Why not broadcast cancel_consumer / add_consumer over the monitoring channel instead: a
broadcast reaches only the workers listening at that moment (not those that start later,
nor any while Redis is down), and add_consumer sent to all would make workers that were
never started for the queue begin consuming it. Each worker knows its own queues; the row
is the one truth all of them read.
"""

from __future__ import annotations

import logging
from typing import Any

from celery.worker.consumer import Consumer
from django.conf import settings
from django.contrib.admin.models import ADDITION, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import DatabaseError, connection, transaction

from workers.errors import ApplicationError
from workers.heartbeats import heartbeat_soon
from workers.models import QueuePause
from workers.queues import QUEUES
from workers.sqs_transport import consumer_liveness
from workers.thread_steps import ThreadStep


class QueuePauseRefused(ApplicationError, ValueError):
    """Not a queue, or already in the asked state; the message says which."""


@transaction.atomic
def queue_pause(*, queue: str, user: Any) -> QueuePause:
    if queue not in QUEUES:
        raise QueuePauseRefused(f"There is no queue {queue!r}.")
    pause, created = QueuePause.objects.get_or_create(
        queue=queue, defaults={"paused_by_label": user.get_username()}
    )
    if not created:
        raise QueuePauseRefused(f"Queue {queue} is paused already (by {pause.paused_by_label}).")
    _audit(user, pause, ADDITION, f"Paused queue {queue}")
    return pause


@transaction.atomic
def queue_resume(*, queue: str, user: Any) -> None:
    pause = QueuePause.objects.select_for_update().filter(queue=queue).first()
    if pause is None:
        raise QueuePauseRefused(f"Queue {queue} is not paused.")
    _audit(user, pause, DELETION, f"Resumed queue {queue}")
    pause.delete()


def paused_queues() -> set[str]:
    return set(QueuePause.objects.values_list("queue", flat=True))


def _audit(user: Any, pause: QueuePause, flag: int, message: str) -> None:
    LogEntry.objects.create(
        user_id=user.pk,
        content_type=ContentType.objects.get_for_model(QueuePause),
        object_id=str(pause.pk),
        object_repr=f"queue {pause.queue}",
        action_flag=flag,
        change_message=message,
    )


logger = logging.getLogger(__name__)


class QueuePauses(ThreadStep):
    """Consumer step: keeps this worker's consumption in line with the paused queues."""

    thread_name = "queue-pauses"

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.consumer = c
        self.own: set[str] = set()  # the queues this worker was started for
        self.paused: set[str] = set()  # of those, the ones paused when last looked at
        super().__init__(c, **kwargs)

    def start(self, c: Consumer) -> None:
        # Runs before the task consumer is made (the Tasks step requires this one): a paused
        # queue is never consumed, not even for a moment after start.
        if not self.own:
            self.own = set(c.app.amqp.queues.consume_from)
        try:
            self.paused = paused_queues() & self.own
        except DatabaseError as exc:
            logger.warning("queue pauses: cannot read them at start (%r); consuming all", exc)
        finally:
            connection.close()
        for queue in self.paused:
            logger.info("queue %s is paused: not consuming from it", queue)
            c.app.amqp.queues.deselect(queue)
        super().start(c)

    def _run(self) -> None:
        while self._tick(settings.QUEUE_PAUSE_CHECK_SECONDS):
            try:
                paused = paused_queues() & self.own
            except DatabaseError as exc:
                logger.warning("queue pauses: cannot read them (%r); will retry", exc)
                continue
            finally:
                # No connection stays open between looks: pool processes forked meanwhile
                # would inherit its socket.
                connection.close()
            if paused != self.paused:
                self.consumer.call_soon(self._apply, paused)

    def _apply(self, paused: set[str]) -> None:
        """On the worker's event loop: stop or start consuming where the pauses changed."""
        c = self.consumer
        consuming = set(c.app.amqp.queues.consume_from)
        for queue in sorted(paused - self.paused):
            if queue in consuming:
                logger.info("queue %s paused: stop consuming from it", queue)
                c.cancel_task_queue(queue)
        for queue in sorted(self.paused - paused):
            if queue not in consuming:
                logger.info("queue %s resumed: consuming from it again", queue)
                c.add_task_queue(queue)
                consumer_liveness.resumed(queue)
        self.paused = paused
        heartbeat_soon()
