"""kombu's SQS transport, with a consumer loop that survives failed polls (kombu issue 1127).

Why the stock loop dies: each queue is polled by a chain of promises that reschedules itself
from the callback of the previous ReceiveMessage. When a poll fails (connection refused,
timeout, 5xx) kombu's `_on_list_ready` returns `[]` instead of the parsed response, and the
channel's `_on_messages_ready` calls `[].get("Messages")`: the AttributeError travels up the
chain, the rescheduling callback is never called, and that queue is never polled again while
the worker otherwise looks alive ("Error in timer: AttributeError(...)"). Other HTTP errors
raise from `_on_list_ready` itself, with the same effect.

Here every poll ends by scheduling the next one, whatever happened: a failed poll is logged
and retried after the polling interval. And every poll ends: kombu's HTTP client ignored
a request's timeouts, so a ReceiveMessage on a connection that went silent waited for good
(workers/celery_compat.py `TimedCurlClient`). The channel also records when the consumer last
received from SQS (`consumer_liveness`), which the worker's heartbeat reports and its
watchdog acts on (workers/heartbeats.py).

A DeleteMessage (the acknowledgement of a finished job) that SQS refuses with an error
(a 5xx in a partial outage, throttling) is logged as a warning naming SQS's error code, once
per run of refusals: kombu catches the error and gives the message back without a word, so
SQS delivers it again after its visibility timeout and nobody knew why (the claims drop that
copy of an ended job). What kombu does with the message is left as it is.

Registered for the sqs:// scheme in workers/celery.py. The loop's steps are kombu's private
methods, reached through workers/celery_compat.py.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from botocore.exceptions import ClientError
from kombu.transport import SQS
from vine import ensure_promise, promise

from workers.celery_compat import SQSChannelHooks, timed_http_client_install

logger = logging.getLogger(__name__)


class ConsumerLiveness:
    """When this process's consumer last proved it is consuming (thread-safe, monotonic),
    in all and per queue.

    A successful ReceiveMessage counts, empty or not, and so does a pass of the loop that
    skipped receiving because every slot was busy: that worker is working, not stalled.
    Each queue is polled on its own, and one can fail while the others answer (its SQS
    queue deleted, or gone with an endpoint restarted empty), so each has its own record:
    the worker is alive as long as any poll works, but it consumes only the queues whose
    polls do.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_receive: float | None = None
        self._last_receive_wall: float | None = None
        self._queue_receive_wall: dict[str, float] = {}
        self._failing: set[str] = set()
        # When a poll last ended, answered or refused: the loop turns while SQS is down.
        self._last_turn: float | None = None

    def received(self, queue: str) -> bool:
        """Note a successful poll of `queue`; True if it ends that queue's run of failures."""
        with self._lock:
            self._last_receive = self._last_turn = time.monotonic()
            self._last_receive_wall = self._queue_receive_wall[queue] = time.time()
            recovered = queue in self._failing
            self._failing.discard(queue)
            return recovered

    def failed(self, queue: str) -> bool:
        """Note a failed poll of `queue`; True if it is the first of that queue's run of
        failures."""
        with self._lock:
            self._last_turn = time.monotonic()
            first = queue not in self._failing
            self._failing.add(queue)
            return first

    def resting(self) -> None:
        """The consumer has no queue to poll (every one paused): it does what it was told,
        as alive as a poll would prove, and its silence counts from now."""
        with self._lock:
            self._last_receive = self._last_turn = time.monotonic()
            self._last_receive_wall = time.time()

    def resumed(self, queue: str) -> None:
        """`queue` is consumed again: it has a long poll's time to answer before it counts
        as not received from, as at a worker's start."""
        with self._lock:
            self._queue_receive_wall[queue] = time.time()

    def queue_receives_wall(self) -> dict[str, float]:
        """When each queue's poll last worked (wall clock); a queue never polled is absent."""
        with self._lock:
            return dict(self._queue_receive_wall)

    def silent_for(self) -> float | None:
        """Seconds since the consumer last proved alive; None before it ever polled."""
        with self._lock:
            if self._last_receive is None:
                return None
            return time.monotonic() - self._last_receive

    def turned_for(self) -> float | None:
        """Seconds since a poll last ended, whether SQS answered or not; None before any."""
        with self._lock:
            if self._last_turn is None:
                return None
            return time.monotonic() - self._last_turn

    def last_receive_wall(self) -> float | None:
        with self._lock:
            return self._last_receive_wall

    def reset(self) -> None:
        with self._lock:
            self._last_receive = self._last_receive_wall = self._last_turn = None
            self._queue_receive_wall.clear()
            self._failing.clear()


consumer_liveness = ConsumerLiveness()


# How much longer than its long poll a ReceiveMessage may take before it counts as failed.
RECEIVE_TIMEOUT_MARGIN_SECONDS = 10.0


class PollFailed(Exception):
    """ReceiveMessage did not return a response (kombu passes `[]` for these)."""


class _AckWatch:
    """The SQS client as kombu's `basic_ack` uses it: notes the error code of a DeleteMessage
    that SQS refused before kombu catches the error."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.refused: str | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def delete_message(self, **kwargs: Any) -> Any:
        try:
            return self._client.delete_message(**kwargs)
        except ClientError as exc:
            self.refused = str(exc.response.get("Error", {}).get("Code") or "no error code")
            raise


class AckRefusals:
    """Runs of refused acknowledgements (thread-safe): a warning when a run starts or its
    error changes, another when an acknowledgement goes through again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._code: str | None = None
        self._count = 0

    def refused(self, code: str, queue_url: str) -> None:
        with self._lock:
            first = code != self._code
            self._code = code
            self._count += 1
        if first:
            logger.warning(
                "SQS refused to delete (acknowledge) a message of %s (%s): it will be "
                "delivered again after its visibility timeout; further refusals with this "
                "error are not logged until an acknowledgement goes through",
                queue_url,
                code,
            )

    def acknowledged(self) -> None:
        with self._lock:
            code, count = self._code, self._count
            self._code, self._count = None, 0
        if code is not None:
            logger.warning("SQS acknowledges messages again (%d refused, last: %s)", count, code)


ack_refusals = AckRefusals()


class Channel(SQSChannelHooks):
    _ack_watch = threading.local()

    def sqs(self, queue: str | None = None) -> Any:
        client = super().sqs(queue=queue)
        watch = getattr(self._ack_watch, "pending", None)
        if watch is None:
            return client
        # Only the acknowledgement's own DeleteMessage: kombu's retry of a rejected message
        # asks for the client again and gets it plain.
        self._ack_watch.pending = None
        watch._client = client
        return watch

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        watch = _AckWatch(None)
        self._ack_watch.pending = watch
        try:
            try:
                info = self.qos.get(delivery_tag).delivery_info
            except KeyError:
                info = {}
            super().basic_ack(delivery_tag, multiple=multiple)
        finally:
            self._ack_watch.pending = None
        if watch.refused is not None:
            ack_refusals.refused(watch.refused, str(info.get("sqs_queue", "its queue")))
        elif "sqs_message" in info:
            ack_refusals.acknowledged()

    def asynsqs(self, queue: str | None = None) -> Any:
        # Every ReceiveMessage ends: answered, refused or timed out (kombu's own client
        # would wait for good on a connection that went silent).
        timed_http_client_install(
            minimum_request_timeout=self.wait_time_seconds + RECEIVE_TIMEOUT_MARGIN_SECONDS
        )
        return super().asynsqs(queue)

    def poll_schedule(self, queue: str) -> None:
        if not self.queue_consumed(queue):
            return
        if not self.qos.can_consume():
            # Every slot is busy: the loop is alive and polls again once one frees.
            consumer_liveness.received(queue)
            self.poll_next(queue)
            return
        done = promise(self.poll_next, (queue,))
        try:
            self.receive_bulk_async(queue, callback=done)
        except Exception as exc:
            # Raised before any request was made (e.g. the queue URL could not be looked up).
            self._poll_failed(queue, done, exc)

    def receive_async(self, queue: str, *, count: int = 1, callback: Any = None) -> Any:
        q_url = self.queue_url(queue)
        qname = self.canonical_queue_name(queue)
        done = ensure_promise(callback)
        # A promise with on_error: an exception anywhere below (kombu's response parsing,
        # our delivery) ends here instead of unwinding past the rescheduling callback.
        received = promise(
            self._on_receive,
            (q_url, queue, done),
            on_error=lambda q_url, queue, done, exc: self._poll_failed(queue, done, exc),
        )
        return self.receive_from_sqs(
            queue_name=qname,
            queue_url=q_url,
            count=count,
            connection=self.asynsqs(queue=qname),
            callback=received,
        )

    def _on_receive(self, q_url: str, queue: str, done: promise, response: Any) -> None:
        if not isinstance(response, dict):
            raise PollFailed("no response from SQS (timeout, server error or unreachable)")
        if consumer_liveness.received(queue):
            logger.warning("SQS poll of %s works again", queue)
        delivered = self.messages_deliver(q_url, queue, response)
        done(delivered)

    def _poll_failed(self, queue: str, done: promise, exc: BaseException) -> None:
        if consumer_liveness.failed(queue):
            logger.warning("SQS poll of %s failed, retrying: %r", queue, exc)
        if done.ready or done.failed:
            # The failure came after the next poll was already scheduled.
            return
        done(0)


class Transport(SQS.Transport):
    Channel = Channel
