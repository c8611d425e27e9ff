"""Sending Celery messages to SQS up to ten per request (SendMessageBatch), one outcome each.

A message is encoded by Celery and kombu themselves (`apply_async` through a producer whose
SQS client only records what it would send), or filled in from a template such a message
proved reproducible (workers/message_templates.py), so a batched message is byte for byte
the one `apply_async` sends: same body, encoding, delay and FIFO attributes. The recorded
`SendMessage` arguments are then sent grouped per queue, ten per call and within SQS's
256 KiB per request, and each message gets its own outcome: sent, worth retrying, or
refused for good (retrying cannot help).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from kombu import Producer

MAX_ENTRIES = 10
MAX_REQUEST_BYTES = 256 * 1024
# Error codes by which SQS refuses a message itself (its size, characters, delay): sent
# alone and refused with one of these, the message will never be accepted.
REFUSED_CODES = frozenset(
    {
        "InvalidParameterValue",
        "InvalidMessageContents",
        "AWS.SimpleQueueService.InvalidMessageContents",
        "BatchRequestTooLong",
        "AWS.SimpleQueueService.BatchRequestTooLong",
    }
)


@dataclass(frozen=True)
class SqsMessage:
    """A message as kombu would send it: its client and its `SendMessage` arguments."""

    client: Any
    arguments: dict[str, Any]

    @property
    def size(self) -> int:
        return len(self.arguments["MessageBody"].encode())


@dataclass(frozen=True)
class Failure:
    reason: str
    refused: bool  # the message itself was refused: sending it again cannot help


class _RecordingClient:
    """kombu's SQS client, except that `send_message` only records its arguments; other
    calls (queue URL look-ups, queue creation) go to the real client."""

    def __init__(self, client: Any, sink: list[SqsMessage]) -> None:
        self._client = client
        self._sink = sink

    def send_message(self, **arguments: Any) -> dict[str, Any]:
        self._sink.append(SqsMessage(self._client, arguments))
        return {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


@contextmanager
def recording_producer(producer: Producer) -> Iterator[list[SqsMessage]]:
    """Make `producer` record the SQS messages it publishes instead of sending them.

    Relies on kombu's SQS channel sending through `channel.sqs(queue=...).send_message`;
    the tests that publish through the relay to real workers fail if that changes.
    """
    channel = producer.channel
    real_client_for = channel.sqs
    sink: list[SqsMessage] = []
    channel.sqs = lambda queue=None: _RecordingClient(real_client_for(queue=queue), sink)
    try:
        yield sink
    finally:
        del channel.sqs


def send_batches(messages: Sequence[SqsMessage], *, alone: bool = False) -> dict[int, Failure]:
    """Send `messages` in batches per queue (one per request when `alone`); return the
    failure of each message that was not sent, by its index. Missing indexes were sent.

    Once the endpoint cannot be reached the remaining batches are not tried: they fail
    with the same reason.
    """
    failures: dict[int, Failure] = {}
    per_queue: dict[tuple[int, str], list[int]] = {}
    for index, message in enumerate(messages):
        key = (id(message.client), message.arguments["QueueUrl"])
        per_queue.setdefault(key, []).append(index)
    unreachable: Failure | None = None
    for indexes in per_queue.values():
        for chunk in _chunks(indexes, messages, 1 if alone else MAX_ENTRIES):
            if unreachable is not None:
                failures.update(dict.fromkeys(chunk, unreachable))
                continue
            try:
                failures.update(_send_batch(messages, chunk))
            except ClientError as exc:
                # The whole request was refused: a message in it may be at fault, so only
                # a message refused when sent alone is refused for good.
                error = exc.response.get("Error", {})
                code = str(error.get("Code", ""))
                failure = Failure(f"{code}: {error.get('Message', exc)}", False)
                if len(chunk) == 1 and code in REFUSED_CODES:
                    failure = Failure(failure.reason, True)
                failures.update(dict.fromkeys(chunk, failure))
            except (BotoCoreError, OSError) as exc:
                unreachable = Failure(f"{exc.__class__.__name__}: {exc}", False)
                failures.update(dict.fromkeys(chunk, unreachable))
    return failures


def _send_batch(messages: Sequence[SqsMessage], chunk: list[int]) -> dict[int, Failure]:
    first = messages[chunk[0]]
    entries = [
        {"Id": str(index), **_without_queue_url(messages[index].arguments)} for index in chunk
    ]
    response = first.client.send_message_batch(
        QueueUrl=first.arguments["QueueUrl"], Entries=entries
    )
    return {
        int(failed["Id"]): Failure(
            f"{failed.get('Code', '')}: {failed.get('Message', '')}",
            # SQS's own verdict: the sender's fault is the message's, not the moment's.
            bool(failed.get("SenderFault")),
        )
        for failed in response.get("Failed", [])
    }


def _chunks(indexes: list[int], messages: Sequence[SqsMessage], limit: int) -> Iterator[list[int]]:
    chunk: list[int] = []
    size = 0
    for index in indexes:
        message_size = messages[index].size
        if chunk and (len(chunk) == limit or size + message_size > MAX_REQUEST_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(index)
        size += message_size
    if chunk:
        yield chunk


def _without_queue_url(arguments: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in arguments.items() if key != "QueueUrl"}
