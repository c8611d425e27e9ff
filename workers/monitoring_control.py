"""Remote control over the monitoring channel (workers/monitoring.py): `celery inspect`,
revoke and Flower's pool grow/shrink reach a worker whose tasks come from SQS.

A thread consumes the broadcast mailbox (pidbox) from the channel, runs each command on the
worker's own event loop (pool grow/shrink and terminate are not safe from another thread)
and replies over the same channel: Celery's own mailbox replies through the app's producer
pool, which is SQS here, where the replies would vanish. The `conf` command answers with
Celery's own settings only, secrets masked.
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
from typing import Any

from celery import Celery, bootsteps
from celery.app.defaults import DEFAULTS as CELERY_DEFAULTS
from celery.app.utils import filter_hidden_settings
from celery.utils.collections import AttributeDict
from celery.utils.serialization import jsonify
from celery.worker import control as worker_control
from celery.worker.consumer import Consumer
from kombu import Connection
from kombu.common import ignore_errors
from kombu.pidbox import Mailbox, Node
from kombu.utils.encoding import safe_repr, safe_str

from workers.monitoring import Backoff, Tasks, monitor_connection, monitor_url, redacted_url

logger = logging.getLogger(__name__)

# How long a control command may wait for the worker's event loop to run it.
COMMAND_TIMEOUT_SECONDS = 10.0


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
