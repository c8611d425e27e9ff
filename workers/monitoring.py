"""The monitoring channel: worker events and remote control over Redis while tasks stay on SQS.

Celery's SQS transport carries neither events nor broadcast messages, so Flower and
`celery inspect` see nothing. The worker's consumer blueprint (`worker_consumer` setting)
swaps in two steps that use a separate small broker, `CELERY_MONITOR_URL`:

- `Events`: the event dispatcher publishes to the channel. It never blocks the task loop on
  an outage for long: after a failed publish it buffers (bounded) and tries again later.
- `Control` (workers/monitoring_control.py): a thread consumes the broadcast mailbox
  (pidbox) from the channel, runs each command on the worker's own event loop (pool
  grow/shrink and terminate are not safe from another thread) and replies over the same
  channel. Celery's own mailbox replies through the app's producer pool, which is SQS
  here: the replies would vanish.

Mingle, Gossip and DelayedDelivery are left out: they need a broker with fanout/topic
exchanges or RabbitMQ quorum queues, and never run on SQS anyway. Without
`CELERY_MONITOR_URL` the worker sends no events and answers no remote control.
"""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urlsplit

from celery.worker.consumer import Consumer
from celery.worker.consumer import events as events_step
from celery.worker.consumer import heart as heart_step
from celery.worker.consumer import tasks as tasks_step
from django.conf import settings
from kombu import Connection
from kombu.common import ignore_errors
from kombu.exceptions import KombuError

from workers.celery_compat import PublishHookEventDispatcher, events_step_close
from workers.errors import ApplicationError
from workers.service_health import ServiceHealth, error_kind

logger = logging.getLogger(__name__)

# An unreachable channel must cost the worker's event loop one short connection attempt,
# not kombu's retries with sleeps in between: the dispatcher and the control thread do their
# own back-off. Flower uses the same options (workers/flower.py).
TRANSPORT_OPTIONS: dict[str, Any] = {
    "socket_connect_timeout": 2,
    "socket_timeout": 5,
    "socket_keepalive": True,
    "max_retries": 0,
}
# Events published while the channel is down, kept for when it returns. Older ones are
# dropped: they describe the past, and memory must stay bounded through a long outage.
MAX_BUFFERED_EVENTS = 2_000
RETRY_MIN_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


def monitor_url() -> str:
    return settings.CELERY_MONITOR_URL


def monitor_connection(url: str) -> Connection:
    return Connection(url, transport_options=dict(TRANSPORT_OPTIONS), connect_timeout=2)


class MonitoringUnavailable(ApplicationError):
    """The monitoring channel cannot be reached: Flower sees no workers, jobs still run."""


class MonitoringHealth(ServiceHealth):
    """What this process knows of the monitoring channel, so the operations page can say it
    is down (it named the channel as if all were well, while Flower saw no worker)."""

    errors = (OSError, KombuError)

    def probe(self) -> None:
        with monitor_connection(monitor_url()) as connection:
            connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0)

    def refusal(self, error: str | None) -> ApplicationError:
        return MonitoringUnavailable(
            f"The monitoring channel is unreachable ({error_kind(error)})."
        )


monitoring_health = MonitoringHealth()


def redacted_url(url: str) -> str:
    """The URL without its password, for logs and pages.

    A URL with no password is shown as it is: kombu's as_uri() writes ":**@" into every
    one, so a Redis without a password read as if it had one.
    """
    if not url:
        return ""
    try:
        has_password = urlsplit(url).password is not None
    except ValueError:
        has_password = True
    return monitor_connection(url).as_uri() if has_password else url


class Backoff:
    """When to try an unreachable channel again: doubling delays, capped."""

    def __init__(self) -> None:
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(max(self.delay * 2, RETRY_MIN_SECONDS), RETRY_MAX_SECONDS)
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0


class ChannelEventDispatcher(PublishHookEventDispatcher):
    """Publishes worker and task events to the monitoring channel.

    Called on the worker's event loop: while the channel is down it buffers instead of
    trying on every event, and tries again after a growing pause.
    """

    def __init__(self, connection: Connection, **kwargs: Any) -> None:
        super().__init__(connection, outbound_buffer_size=MAX_BUFFERED_EVENTS, **kwargs)
        # The worker's event loop asks `self.connection` for AMQP heartbeats, which connects
        # it there and then: a channel down at that moment would stop the worker. The
        # producer keeps its own reference; the connection is closed with the dispatcher.
        self.channel_connection, self.connection = connection, None
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._down = False

    @property
    def buffered(self) -> int:
        """Events waiting for the channel to come back."""
        return len(self.outbound_buffer)

    def close(self) -> None:
        super().close()
        ignore_errors(self.channel_connection, self.channel_connection.close)

    def event_publish(self, event: Any, producer: Any, routing_key: str) -> None:
        if producer is None:
            return
        if self._down and time.monotonic() < self._retry_at:
            self.outbound_buffer.append((event, routing_key))
            return
        try:
            while self.outbound_buffer:
                self._send(producer, *self.outbound_buffer[0])
                self.outbound_buffer.popleft()
            self._send(producer, event, routing_key)
        except Exception as exc:  # whatever the transport raises, tasks must go on
            self.outbound_buffer.append((event, routing_key))
            delay = self._backoff.failed()
            self._retry_at = time.monotonic() + delay
            if not self._down:
                logger.warning(
                    "monitoring channel: cannot publish events (%r); buffering up to %d, "
                    "retrying in %.0fs",
                    exc,
                    MAX_BUFFERED_EVENTS,
                    delay,
                )
            self._down = True
        else:
            if self._down:
                logger.info("monitoring channel: publishing events again")
            self._down = False
            self._backoff.succeeded()

    def _send(self, producer: Any, event: Any, routing_key: str) -> None:
        producer.publish(
            event,
            routing_key=routing_key,
            exchange=self.exchange.name,
            retry=False,
            declare=[self.exchange],
            serializer=self.serializer,
            headers=self.headers,
            delivery_mode=self.delivery_mode,
        )


class Events(events_step.Events):
    """The worker's event dispatcher, on the monitoring channel (or disabled without one)."""

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.url = monitor_url()
        super().__init__(c, **kwargs)
        if not self.url:
            self.send_events = self.enabled = False

    def start(self, c: Consumer) -> None:
        previous = events_step_close(self, c)
        if not self.url:
            c.event_dispatcher = c.app.events.Dispatcher(hostname=c.hostname, enabled=False)
            return
        dispatcher = c.event_dispatcher = ChannelEventDispatcher(
            monitor_connection(self.url),
            hostname=c.hostname,
            enabled=True,
            groups=self.groups,
            app=c.app,
            # Task events are batched when the worker runs an event loop, as Celery does.
            buffer_group=["task"] if c.hub else None,
            on_send_buffered=c.on_send_event_buffered if c.hub else None,
        )
        if previous:
            dispatcher.extend_buffer(previous)
            dispatcher.flush()
            for request in tuple(events_step.reserved_requests):
                request.eventer = dispatcher

    def include_if(self, c: Consumer) -> bool:
        # Always created: Heart and Tasks read `c.event_dispatcher`, enabled or not.
        return True


class Heart(heart_step.Heart):
    requires = (Events,)


class Tasks(tasks_step.Tasks):
    # Tasks must start after the dispatcher: the task strategies capture it. Stock Tasks
    # reaches the dispatcher through Mingle, which is not part of this blueprint.
    # After QueuePauses: a worker started while a queue is paused never consumes from it.
    requires = (Events, "workers.queue_pauses:QueuePauses")


class MonitoredConsumer(Consumer):
    """The worker's consumer with events and remote control on the monitoring channel."""

    # Read by the `election` control command; there is no gossip over SQS.
    gossip = None

    # A message that is no Celery job (or names no task here) goes to its dead-letter queue
    # at once; Celery's own handling rejects it, and SQS then redelivers it five times
    # before the redrive policy reaches the same verdict.
    def on_unknown_message(self, body: Any, message: Any) -> None:
        if not _dead_letter(message, "not a Celery job"):
            super().on_unknown_message(body, message)

    def on_unknown_task(self, body: Any, message: Any, exc: BaseException) -> None:
        if not _dead_letter(message, f"unknown task: {exc!r}"):
            super().on_unknown_task(body, message, exc)

    def on_invalid_task(self, body: Any, message: Any, exc: BaseException) -> None:
        if not _dead_letter(message, f"invalid task message: {exc!r}"):
            super().on_invalid_task(body, message, exc)

    def on_decode_error(self, message: Any, exc: BaseException) -> None:
        if not _dead_letter(message, f"cannot be decoded: {exc!r}"):
            super().on_decode_error(message, exc)

    class Blueprint(Consumer.Blueprint):
        default_steps = [
            "celery.worker.consumer.connection:Connection",
            "workers.monitoring:Events",
            "workers.monitoring:Heart",
            "workers.queue_pauses:QueuePauses",
            "workers.monitoring:Tasks",
            "workers.monitoring_control:Control",
            "workers.heartbeats:HeartbeatRecorder",
            "workers.heartbeats:ConsumerWatchdog",
            "workers.visibility:VisibilityExtender",
            "workers.visibility:ClaimRenewer",
            "celery.worker.consumer.consumer:Evloop",
            "celery.worker.consumer.agent:Agent",
        ]


def _dead_letter(message: Any, reason: str) -> bool:
    from workers.dead_letters import dead_letter_now

    return dead_letter_now(message, reason)
