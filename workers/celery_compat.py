"""Every private Celery and kombu name opsqueue uses, behind names of its own.

Celery and kombu are pinned exactly (requirements/runtime.in); each adapter below says which version
it was checked against and why no public API does the job. tests/workers/test_celery_compat.py
exercises each against the installed versions with real Celery/kombu objects, so an upgrade
that renames or reshapes one fails there, not in a worker at night.

Checked against Celery 5.7.0 and kombu 5.7.0.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from celery.beat import ScheduleEntry, _evaluate_entry_args, _evaluate_entry_kwargs
from celery.events.dispatcher import EventDispatcher
from celery.worker.consumer import events as events_step
from kombu.transport import SQS

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
