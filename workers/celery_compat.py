"""Every private Celery and kombu name opsqueue uses, behind names of its own.

Celery and kombu are pinned exactly (requirements/runtime.in); each adapter below says which version
it was checked against and why no public API does the job. tests/workers/test_celery_compat.py
exercises each against the installed versions with real Celery/kombu objects, so an upgrade
that renames or reshapes one fails there, not in a worker at night.

Checked against Celery 5.7.0 and kombu 5.7.0.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import Any

import pycurl
from celery.beat import ScheduleEntry, _evaluate_entry_args, _evaluate_entry_kwargs
from celery.events.dispatcher import EventDispatcher
from celery.worker.consumer import events as events_step
from kombu.asynchronous import get_event_loop
from kombu.asynchronous.http.curl import CurlClient
from kombu.transport import SQS

logger = logging.getLogger(__name__)

CHECKED_WITH = {"celery": "5.7.0", "kombu": "5.7.0"}


# --- beat ---------------------------------------------------------------------------------


def beat_entry_arguments(entry: ScheduleEntry) -> tuple[list[Any], dict[str, Any]]:
    """An entry's args and kwargs as beat sends them: `BeatLazyFunc` values called.

    Celery 5.7.0: `Scheduler.apply_async` does this with the module-private
    `_evaluate_entry_args` / `_evaluate_entry_kwargs`; a scheduler that publishes itself
    (workers/beat.py records the job first) must do the same, and Celery offers no public
    function for it."""
    return _evaluate_entry_args(entry.args), _evaluate_entry_kwargs(entry.kwargs)


# --- worker events ------------------------------------------------------------------------


class PublishHookEventDispatcher(EventDispatcher):
    """An event dispatcher whose every publish goes through `event_publish`.

    Celery 5.7.0: `send()`, `publish()` and `flush()` all end in the private
    `_publish(event, producer, routing_key, retry=False, retry_policy=None, utcoffset=...)`,
    called under the dispatcher's mutex; overriding it is the only way to change how events
    go out (workers/monitoring.py buffers while the channel is down instead of blocking).
    Failed events wait in `_outbound_buffer`, a deque of (event, routing_key) that `flush()`
    and `extend_buffer()` read: `outbound_buffer` is that deque, bounded on request."""

    def __init__(self, *args: Any, outbound_buffer_size: int | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        if outbound_buffer_size is not None:
            current: deque[tuple[Any, str]] = self.outbound_buffer
            self._outbound_buffer = deque(current, maxlen=outbound_buffer_size)

    @property
    def outbound_buffer(self) -> deque[tuple[Any, str]]:
        """Events waiting to be published again, oldest first."""
        buffer: deque[tuple[Any, str]] = getattr(self, "_outbound_buffer")  # noqa: B009
        return buffer

    def _publish(
        self,
        event: Any,
        producer: Any,
        routing_key: str,
        retry: bool = False,
        retry_policy: Any = None,
        **kwargs: Any,
    ) -> None:
        self.event_publish(event, producer, routing_key)

    def event_publish(self, event: Any, producer: Any, routing_key: str) -> None:
        raise NotImplementedError


def events_step_close(step: events_step.Events, consumer: Any) -> EventDispatcher | None:
    """Close the consumer's current event dispatcher; return it (None if there was none).

    Celery 5.7.0: the Events consumer step's private `_close(c)` keeps the dispatcher's
    groups (changed by remote control) on the step, closes it and clears
    `c.event_dispatcher`; its `start()` does the same before making a new one. A step
    that makes its own dispatcher (workers/monitoring.py) does it through this."""
    closed: EventDispatcher | None = step._close(consumer)
    return closed


# --- the SQS transport's polling loop -----------------------------------------------------


class TimedCurlClient(CurlClient):
    """kombu's curl HTTP client, made to honour each request's timeouts.

    kombu 5.7.0: `CurlClient._setup_request(curl, request, buffer, headers)` copies a
    `Request`'s URL, headers, body… onto the curl handle but never its `connect_timeout`
    or `request_timeout`, so curl waits for good. The SQS channel's ReceiveMessage asks for
    20 s (`AsyncHTTPSConnection(timeout=20.0)`); on a connection that went silent (a
    black-holed route, a NAT that dropped it, an endpoint that took the request and never
    answered) that poll never ended, and that queue was never polled again until the
    worker's watchdog stopped the whole worker minutes later. With the timeouts applied
    curl ends such a request (code 599), which kombu reads as a failed poll, and the
    next one goes out on a fresh connection. `minimum_request_timeout` keeps a long poll
    (`wait_time_seconds`, up to SQS's 20 s) from timing out while SQS rightly waits."""

    def __init__(self, hub: Any, *, minimum_request_timeout: float = 0.0) -> None:
        super().__init__(hub)
        self.minimum_request_timeout = minimum_request_timeout

    def _setup_request(
        self, curl: Any, request: Any, buffer: Any, headers: Any, _pycurl: Any = pycurl
    ) -> Any:
        super()._setup_request(curl, request, buffer, headers, _pycurl)
        total = max(float(request.request_timeout), self.minimum_request_timeout)
        curl.setopt(_pycurl.CONNECTTIMEOUT_MS, int(float(request.connect_timeout) * 1000))
        curl.setopt(_pycurl.TIMEOUT_MS, int(total * 1000))


def timed_http_client_install(*, minimum_request_timeout: float) -> CurlClient:
    """The current event loop's HTTP client, a `TimedCurlClient` from now on.

    kombu 5.7.0: kombu's async AWS connections take the loop's client from
    `kombu.asynchronous.http.get_client()`, which keeps it as the hub's private
    `_current_http_client` and makes a plain `CurlClient` if there is none; the SQS
    channel passes no client of its own. Installed before the channel makes its first
    async connection, ours is the one every ReceiveMessage uses."""
    hub = get_event_loop()
    assert hub is not None, "no event loop: only a worker's consumer polls SQS"
    current = getattr(hub, "_current_http_client", None)
    if isinstance(current, TimedCurlClient):
        current.minimum_request_timeout = max(
            current.minimum_request_timeout, minimum_request_timeout
        )
        return current
    if current is not None:
        # One made before us (nothing in a worker makes one: tests/workers/
        # test_broker_outage.py would time out): its requests may be in flight, keep it.
        logger.warning("kombu's HTTP client was made before ours: SQS polls may not time out")
        return current
    client = TimedCurlClient(hub, minimum_request_timeout=minimum_request_timeout)
    setattr(hub, "_current_http_client", client)  # noqa: B010 (kombu's private slot)
    return client


class SQSChannelHooks(SQS.Channel):
    """kombu's SQS channel with the steps of its polling loop under names of ours.

    kombu 5.7.0 polls each consumed queue with a chain of hub callbacks:
    `_loop1(queue, messages_fetched)` schedules `_schedule_queue(queue)`, which (if the
    queue is still consumed and QoS has room) calls `_get_bulk_async` → `_get_async`, which
    looks up the queue URL (`_new_queue`), sends ReceiveMessage (`_get_from_sqs`) and hands
    the response to `_on_messages_ready(queue_url, queue, response)`. All private: kombu
    offers no public hook into the loop, and workers/sqs_transport.py must replace two
    steps to keep the loop alive after a failed poll (kombu issue 1127).

    Override `poll_schedule` and `receive_async`; call the other methods from them."""

    # Called by kombu's loop.
    def _schedule_queue(self, queue: str) -> None:
        self.poll_schedule(queue)

    def _get_async(self, queue: str, count: int = 1, callback: Any = None) -> Any:
        return self.receive_async(queue, count=count, callback=callback)

    # What a subclass overrides (by default, kombu's own steps).
    def poll_schedule(self, queue: str) -> None:
        super()._schedule_queue(queue)

    def receive_async(self, queue: str, *, count: int = 1, callback: Any = None) -> Any:
        return super()._get_async(queue, count, callback=callback)

    # kombu's steps, to call.
    def queue_consumed(self, queue: str) -> bool:
        """Whether the channel still consumes from `queue`."""
        return queue in self._active_queues

    def poll_next(self, queue: str, messages_fetched: int = 0) -> None:
        """Schedule the next poll of `queue` (at once, or after the polling interval)."""
        self._loop1(queue, messages_fetched)

    def receive_bulk_async(self, queue: str, *, callback: Any) -> Any:
        """Receive as many messages as QoS allows; `callback` gets the count delivered."""
        return self._get_bulk_async(queue, callback=callback)

    def queue_url(self, queue: str) -> str:
        url: str = self._new_queue(queue)
        return url

    def receive_from_sqs(
        self, *, queue_name: str, queue_url: str, count: int, connection: Any, callback: Any
    ) -> Any:
        """One asynchronous ReceiveMessage; `callback` gets the parsed response."""
        return self._get_from_sqs(
            queue_name=queue_name,
            queue_url=queue_url,
            count=count,
            connection=connection,
            callback=callback,
        )

    def messages_deliver(self, queue_url: str, queue: str, response: dict[str, Any]) -> int:
        """Hand a ReceiveMessage response's messages to the consumer; how many."""
        delivered: int = self._on_messages_ready(queue_url, queue, response)
        return delivered
