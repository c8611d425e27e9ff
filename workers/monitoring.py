"""The monitoring channel: worker events and remote control over Redis while tasks stay on SQS.

Celery's SQS transport carries neither events nor broadcast messages, so Flower and
`celery inspect` see nothing. The worker's consumer blueprint (`worker_consumer` setting)
swaps in two steps that use a separate small broker, `CELERY_MONITOR_URL`:

- `Events`: the event dispatcher publishes to the channel. It never blocks the task loop on
  an outage for long: after a failed publish it buffers (bounded) and tries again later.
- `Control`: a thread consumes the broadcast mailbox (pidbox) from the channel, runs each
  command on the worker's own event loop (pool grow/shrink and terminate are not safe from
  another thread) and replies over the same channel. Celery's own mailbox replies through
  the app's producer pool, which is SQS here: the replies would vanish.

Mingle, Gossip and DelayedDelivery are left out: they need a broker with fanout/topic
exchanges or RabbitMQ quorum queues, and never run on SQS anyway. Without
`CELERY_MONITOR_URL` the worker sends no events and answers no remote control.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from collections import deque
from typing import Any

from celery import Celery, bootsteps
from celery.app.defaults import DEFAULTS as CELERY_DEFAULTS
from celery.app.utils import filter_hidden_settings
from celery.events.dispatcher import EventDispatcher
from celery.utils.collections import AttributeDict
from celery.utils.serialization import jsonify
from celery.worker import control as worker_control
from celery.worker.consumer import Consumer
from celery.worker.consumer import events as events_step
from celery.worker.consumer import heart as heart_step
from celery.worker.consumer import tasks as tasks_step
from django.conf import settings
from kombu import Connection
from kombu.common import ignore_errors
from kombu.pidbox import Mailbox, Node
from kombu.utils.encoding import safe_repr, safe_str

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
# How long a control command may wait for the worker's event loop to run it.
COMMAND_TIMEOUT_SECONDS = 10.0


def monitor_url() -> str:
    return settings.CELERY_MONITOR_URL


def monitor_connection(url: str) -> Connection:
    return Connection(url, transport_options=dict(TRANSPORT_OPTIONS), connect_timeout=2)


def redacted_url(url: str) -> str:
    """The URL without its password, for logs and pages."""
    return monitor_connection(url).as_uri() if url else ""


class Backoff:
    """When to try an unreachable channel again: doubling delays, capped."""

    def __init__(self) -> None:
        self.delay = 0.0

    def failed(self) -> float:
        self.delay = min(max(self.delay * 2, RETRY_MIN_SECONDS), RETRY_MAX_SECONDS)
        return self.delay

    def succeeded(self) -> None:
        self.delay = 0.0


class ChannelEventDispatcher(EventDispatcher):
    """Publishes worker and task events to the monitoring channel.

    Called on the worker's event loop: while the channel is down it buffers instead of
    trying on every event, and tries again after a growing pause.
    """

    def __init__(self, connection: Connection, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        # The worker's event loop asks `self.connection` for AMQP heartbeats, which connects
        # it there and then: a channel down at that moment would stop the worker. The
        # producer keeps its own reference; the connection is closed with the dispatcher.
        self.channel_connection, self.connection = connection, None
        self._outbound_buffer: deque[tuple[Any, str]] = deque(maxlen=MAX_BUFFERED_EVENTS)
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._down = False

    @property
    def buffered(self) -> int:
        """Events waiting for the channel to come back."""
        return len(self._outbound_buffer)

    def close(self) -> None:
        super().close()
        ignore_errors(self.channel_connection, self.channel_connection.close)

    def _publish(
        self,
        event: Any,
        producer: Any,
        routing_key: str,
        retry: bool = False,
        retry_policy: Any = None,
        **kwargs: Any,
    ) -> None:
        if producer is None:
            return
        if self._down and time.monotonic() < self._retry_at:
            self._outbound_buffer.append((event, routing_key))
            return
        try:
            while self._outbound_buffer:
                self._send(producer, *self._outbound_buffer[0])
                self._outbound_buffer.popleft()
            self._send(producer, event, routing_key)
        except Exception as exc:  # whatever the transport raises, tasks must go on
            self._outbound_buffer.append((event, routing_key))
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
        previous = self._close(c)
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


def control_mailbox(app: Celery) -> Mailbox:
    """Celery's broadcast mailbox, minus its producer pool: replies go out on the channel
    the request came in on (the app's pool publishes to SQS, where nobody listens)."""
    conf = app.conf
    mailbox = LoopMailbox(
        conf.control_exchange,
        type="fanout",
        accept=conf.accept_content,
        serializer=conf.task_serializer,
        producer_pool=None,
        queue_ttl=conf.control_queue_ttl,
        reply_queue_ttl=conf.control_queue_ttl,
        queue_expires=conf.control_queue_expires,
        queue_exclusive=conf.control_queue_exclusive,
        queue_durable=conf.control_queue_durable,
        reply_queue_expires=conf.control_queue_expires,
    )
    mailbox.clock = app.clock
    return mailbox


def celery_conf(state: Any, with_defaults: bool = False, **kwargs: Any) -> Any:
    """The `conf` command, limited to Celery's own settings with secrets masked.

    The app's configuration is the whole Django settings module; Celery masks only names
    that look secret, so e.g. this channel's own URL and password would go out to anyone
    who asks on the channel (Flower asks on every refresh).
    """
    table = filter_hidden_settings(state.app.conf.table(with_defaults=with_defaults))
    return jsonify(
        {key: value for key, value in table.items() if _is_celery_setting(key)},
        unknown_type_filter=safe_repr,
    )


def _is_celery_setting(key: object) -> bool:
    if not isinstance(key, str):
        return False
    name = key.removeprefix("CELERY_").lower() if key.startswith("CELERY_") else key
    return name in CELERY_DEFAULTS


def control_handlers() -> dict[str, Any]:
    handlers = dict(worker_control.Panel.data)
    for name in ("conf", "dump_conf"):
        handlers[name] = celery_conf
    return handlers


class LoopNode(Node):
    """A mailbox node whose commands run on the worker's event loop, not the mailbox thread."""

    def handle(self, method: str, arguments: dict[str, Any] | None = None) -> Any:
        consumer: Consumer = self.state["consumer"]  # type: ignore[index]
        outcome: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            if not outcome.set_running_or_notify_cancel():
                return
            try:
                outcome.set_result(Node.handle(self, method, arguments))
            except Exception as exc:
                outcome.set_exception(exc)
            except BaseException:
                # WorkerShutdown / SystemExit: the event loop must see it to stop the worker.
                outcome.set_exception(RuntimeError(f"{method}: worker is stopping"))
                raise

        consumer.call_soon(run)
        try:
            return outcome.result(timeout=COMMAND_TIMEOUT_SECONDS)
        except concurrent.futures.TimeoutError:
            outcome.cancel()
            raise TimeoutError(
                f"{method}: the worker's event loop did not run it in time"
            ) from None


class LoopMailbox(Mailbox):
    node_cls = LoopNode


class RemoteControl:
    """The mailbox thread: keeps a connection to the channel, reconnecting after outages."""

    def __init__(self, c: Consumer, url: str) -> None:
        self.consumer = c
        self.url = url
        self.node = control_mailbox(c.app).Node(
            safe_str(c.hostname),
            handlers=control_handlers(),
            state=AttributeDict(
                app=c.app,
                hostname=c.hostname,
                consumer=c,
                tset=set,
            ),
        )
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(
            target=self._run, name="monitoring-channel-control", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=COMMAND_TIMEOUT_SECONDS + 5)
            self._thread = None

    def _run(self) -> None:
        backoff = Backoff()
        where = redacted_url(self.url)
        lost = False
        while not self._stopping.is_set():
            connection = monitor_connection(self.url)
            try:
                connection.ensure_connection(max_retries=0)
                self.node.channel = connection.channel()
                listener = self.node.listen(callback=self._on_message)
                logger.info(
                    "monitoring channel: %s remote control at %s",
                    "reconnected," if lost else "listening for",
                    where,
                )
                backoff.succeeded()
                lost = False
                try:
                    self._drain(connection)
                finally:
                    ignore_errors(connection, listener.cancel)
            except Exception as exc:  # the thread must outlive any outage, whatever it raises
                delay = backoff.failed()
                logger.warning(
                    "monitoring channel: %s unreachable (%r); remote control paused, "
                    "reconnecting in %.0fs",
                    where,
                    exc,
                    delay,
                )
                lost = True
                self._stopping.wait(delay)
            finally:
                ignore_errors(connection, connection.close)

    def _drain(self, connection: Connection) -> None:
        while not self._stopping.is_set():
            try:
                connection.drain_events(timeout=1.0)
            except TimeoutError:  # nothing arrived: look at the stop flag again
                continue

    def _on_message(self, body: Any, message: Any) -> None:
        self.consumer.app.clock.forward()
        try:
            self.node.handle_message(body, message)
        except KeyError as exc:
            logger.error("monitoring channel: no such control command: %s", exc)
        except Exception as exc:
            logger.error("monitoring channel: control command failed: %r", exc, exc_info=True)


class Control(bootsteps.StartStopStep):
    """Remote control (inspect, revoke, pool grow/shrink) over the monitoring channel."""

    requires = (Tasks,)

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self.url = monitor_url()
        super().__init__(c, **kwargs)

    def include_if(self, c: Consumer) -> bool:
        return bool(self.url) and bool(c.app.conf.worker_enable_remote_control)

    def create(self, c: Consumer) -> RemoteControl:
        return RemoteControl(c, self.url)

    def shutdown(self, c: Consumer) -> None:
        self.stop(c)


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
            "workers.monitoring:Control",
            "workers.heartbeats:HeartbeatRecorder",
            "workers.visibility:VisibilityExtender",
            "celery.worker.consumer.consumer:Evloop",
            "celery.worker.consumer.agent:Agent",
        ]


def _dead_letter(message: Any, reason: str) -> bool:
    from workers.dead_letters import dead_letter_now

    return dead_letter_now(message, reason)
