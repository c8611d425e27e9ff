"""The private Celery/kombu names opsqueue relies on (workers/celery_compat.py) still do what
its adapters say, with the installed versions: real Celery and kombu objects throughout;
only their collaborators (a consumer, a hub, an SQS connection) are stand-ins."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import celery
import kombu
import pytest
from celery.beat import BeatLazyFunc, ScheduleEntry
from celery.events.dispatcher import EventDispatcher
from celery.schedules import schedule
from celery.worker.consumer import events as events_step
from kombu import Connection
from kombu.asynchronous import Hub
from kombu.asynchronous.http import Request

from tests.support.servers import AwsEndpoint
from workers.celery import app
from workers.celery_compat import (
    CHECKED_WITH,
    PublishHookEventDispatcher,
    SQSChannelHooks,
    TimedCurlClient,
    beat_entry_arguments,
    events_step_close,
)


def test_the_installed_versions_are_the_ones_the_adapters_were_checked_with() -> None:
    assert {"celery": celery.__version__, "kombu": kombu.__version__} == CHECKED_WITH


def test_beat_entry_arguments_calls_lazy_values_as_beat_does() -> None:
    entry = ScheduleEntry(
        name="e",
        task="t",
        schedule=schedule(60),
        args=(1, BeatLazyFunc(lambda: 2)),
        kwargs={"a": BeatLazyFunc(lambda: 3), "b": 4},
        app=app,
    )
    assert beat_entry_arguments(entry) == ([1, 2], {"a": 3, "b": 4})
    bare = ScheduleEntry(name="e", task="t", schedule=schedule(60), app=app)
    assert beat_entry_arguments(bare) == ([], {})


class Recording(PublishHookEventDispatcher):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.published: list[tuple[Any, Any, str]] = []
        super().__init__(*args, **kwargs)

    def event_publish(self, event: Any, producer: Any, routing_key: str) -> None:
        self.published.append((event, producer, routing_key))


@pytest.fixture
def dispatcher() -> Iterator[Recording]:
    recording = Recording(
        Connection("memory://"), hostname="h@x", enabled=True, app=app, outbound_buffer_size=2
    )
    yield recording
    recording.close()


def test_every_way_an_event_goes_out_reaches_the_publish_hook(dispatcher: Recording) -> None:
    dispatcher.send("worker-online")
    producer = object()
    dispatcher.publish("task-custom", {"n": 1}, producer)
    assert [(e["type"], key) for e, _, key in dispatcher.published] == [
        ("worker-online", "worker.online"),
        ("task-custom", "task.custom"),
    ]
    assert dispatcher.published[0][1] is dispatcher.producer
    assert dispatcher.published[1][1] is producer


def test_the_outbound_buffer_is_the_one_flush_and_extend_buffer_use(
    dispatcher: Recording,
) -> None:
    for n in range(3):
        dispatcher.outbound_buffer.append(({"type": "worker-heartbeat", "n": n}, "worker.hb"))
    # Bounded: the oldest event made room.
    assert [event["n"] for event, _ in dispatcher.outbound_buffer] == [1, 2]

    other = EventDispatcher(Connection("memory://"), hostname="o@x", enabled=False, app=app)
    other.extend_buffer(dispatcher)
    assert len(other._outbound_buffer) == 2
    other.close()

    dispatcher.flush(groups=False)
    assert not dispatcher.outbound_buffer
    published = [(event["n"], key) for event, _, key in dispatcher.published]
    assert published == [(1, "worker.hb"), (2, "worker.hb")]


def test_events_step_close_closes_the_dispatcher_and_keeps_its_groups() -> None:
    consumer: Any = SimpleNamespace(connection_errors=(), channel_errors=(), event_dispatcher=None)
    step = events_step.Events(consumer)
    assert events_step_close(step, consumer) is None

    dispatcher = EventDispatcher(
        Connection("memory://"), hostname="h@x", enabled=True, groups=["task"], app=app
    )
    consumer.event_dispatcher = consumer_dispatcher = dispatcher
    closed = events_step_close(step, consumer)
    assert closed is not None and closed is consumer_dispatcher
    assert consumer.event_dispatcher is None and not closed.enabled
    assert set(step.groups) == {"task"}


@pytest.fixture
def channel(sqs_queues: AwsEndpoint) -> Iterator[SQSChannelHooks]:
    with app.connection_for_write() as connection:
        opened = connection.default_channel
        assert isinstance(opened, SQSChannelHooks)
        yield opened


def test_the_sqs_channel_finds_its_queue_and_whether_it_consumes_it(
    channel: SQSChannelHooks,
) -> None:
    url = channel.queue_url("default")
    assert url.startswith("http") and url.rstrip("/").endswith("default")
    assert not channel.queue_consumed("default")
    channel.basic_consume("default", False, lambda message: None, "tag-1")
    assert channel.queue_consumed("default")
    channel.basic_cancel("tag-1")
    assert not channel.queue_consumed("default")


def test_kombus_loop_calls_the_hooks_and_the_steps_do_what_they_say(
    channel: SQSChannelHooks, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The loop: the next poll is scheduled on the hub, and runs our poll_schedule.
    scheduled: list[tuple[Any, tuple[Any, ...]]] = []
    hub = SimpleNamespace(
        call_soon=lambda fn, *args: scheduled.append((fn, args)),
        call_later=lambda delay, fn, *args: scheduled.append((fn, args)),
    )
    monkeypatch.setattr(channel, "hub", hub)
    polled: list[str] = []
    monkeypatch.setattr(channel, "poll_schedule", polled.append)
    channel.poll_next("default", 1)
    channel.poll_next("default", 0)
    assert len(scheduled) == 2
    for fn, args in scheduled:
        fn(*args)
    assert polled == ["default", "default"]

    # A bulk receive asks our receive_async for as many as QoS allows.
    asked: list[tuple[str, int]] = []
    monkeypatch.setattr(
        channel, "receive_async", lambda queue, count, callback: asked.append((queue, count))
    )
    channel.receive_bulk_async("default", callback=lambda delivered: None)
    assert asked and asked[0][0] == "default" and asked[0][1] >= 1

    # One ReceiveMessage, long-polled, on the connection given.
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
    sqs = SimpleNamespace(receive_message=lambda *a, **kw: calls.append((a, kw)))
    channel.receive_from_sqs(
        queue_name="q", queue_url="http://q", count=3, connection=sqs, callback="cb"
    )
    ((args, kwargs),) = calls
    assert args == ("q", "http://q")
    assert kwargs["number_messages"] == 3 and kwargs["callback"] == "cb"
    assert kwargs["wait_time_seconds"] == channel.wait_time_seconds


def test_a_receive_message_response_is_delivered_to_the_consumer(
    channel: SQSChannelHooks, aws: AwsEndpoint
) -> None:
    # A queue of its own: a worker left running by another test consumes "default".
    url = channel.queue_url("compat-check")
    received: list[Any] = []
    channel.basic_consume("compat-check", False, received.append, "tag-2")
    try:
        body = json.dumps({"body": "", "headers": {}, "properties": {"delivery_tag": "d1"}})
        sqs = aws.client("sqs")
        sqs.send_message(QueueUrl=url, MessageBody=body)
        response = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1, WaitTimeSeconds=5)
        assert channel.messages_deliver(url, "compat-check", {"Messages": []}) == 0
        assert channel.messages_deliver(url, "compat-check", response) == 1
        assert len(received) == 1
        sqs.delete_message(QueueUrl=url, ReceiptHandle=response["Messages"][0]["ReceiptHandle"])
    finally:
        channel.basic_cancel("tag-2")


def test_the_timed_curl_client_ends_a_request_a_silent_server_never_answers() -> None:
    # A server that accepts the connection and reads the request, then says nothing: kombu's
    # own client waited for good (its Request's timeouts never reached curl).
    with socket.create_server(("127.0.0.1", 0)) as server:
        url = f"http://127.0.0.1:{server.getsockname()[1]}/"
        hub = Hub()
        client = TimedCurlClient(hub, minimum_request_timeout=0.5)
        answers: list[Any] = []
        try:
            client.add_request(
                Request(url, connect_timeout=1, request_timeout=1, on_ready=answers.append)
            )
            started = time.monotonic()
            loop = hub.create_loop()
            while not answers and time.monotonic() - started < 15:
                next(loop)
        finally:
            client.close()
            hub.close()
    assert answers, "the request never ended"
    assert answers[0].code == 599 and answers[0].error is not None
    assert time.monotonic() - started < 10
