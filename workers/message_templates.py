"""The relay's SQS messages: Celery's own encoding, learned once per shape of message.

Encoding a job with `apply_async` (through the recording producer of workers/sqs_batch.py)
costs the relay 0.27 ms of CPU per job on a quiet machine and twice that under load, most
of it Celery and kombu working out again what is the same for every job of a task sent
the same way: configuration, routing, exchange, delivery mode, time limits. Under load
that was the largest part of what recording a job costs beyond inserting its rows
(bench/dispatch.py).

So, per shape of message (its task, its options but the job's own values, the names of its
headers, on one producer channel), Celery encodes the first job as before and its message
is kept as the shape's template. A later job of that shape is the template with what comes
from the job itself put in: its id (also the root and correlation ids), its arguments (the
body and their reprs, worked out or as given), its header values, and a fresh delivery tag.
A channel keeps at most MAX_SHAPES templates.

That stays Celery's message because a template is checked before it is trusted: the
second job of a shape is encoded both ways, and only if the two messages are identical,
byte for byte given the same delivery tag, is the template used from then on. A shape
whose messages differ in anything else (a Celery or kombu upgrade, an instrumentation
library stamping each message) stays on `apply_async`, with a warning. Jobs Celery would
treat specially are not templated at all: a delay, an expiry, links, options we do not
know; nor is anything while someone listens to Celery's publish signals or has wrapped
`apply_async`, `send_task` or kombu's `publish`, since those may change each message.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery import Celery, signals
from celery.app.routes import MapRoute
from celery.app.task import Task
from celery.local import Proxy
from celery.utils.saferepr import saferepr
from kombu import Producer, serialization
from kombu.utils.json import dumps as kombu_json_dumps
from kombu.utils.uuid import uuid

from workers.queues import route_task
from workers.sqs_batch import SqsMessage

if TYPE_CHECKING:
    from workers.outbox import OutboundJob

logger = logging.getLogger(__name__)

# Options whose effect on the message is the same for every job that passes the same
# values. Anything else (eta, expires, delay_seconds, link, ...) goes through apply_async.
TEMPLATABLE_OPTIONS = frozenset(
    {"queue", "headers", "time_limit", "soft_time_limit", "argsrepr", "kwargsrepr", "priority"}
)
# Of those, the ones whose values are the job's own (and filled in, not part of the shape).
PER_JOB_OPTIONS = frozenset({"headers", "argsrepr", "kwargsrepr"})
# Shapes a channel keeps templates for: options that vary per job in a way we do not fill
# in (a priority per job, say) make a shape per job, which must not grow without end.
MAX_SHAPES = 200


@dataclass
class _Template:
    task: Task
    message: SqsMessage
    envelope: dict[str, Any]
    embed: Any
    serializer: str
    header_names: tuple[str, ...]
    base64_envelope: bool
    # Celery's limits on argument reprs, as configured when the template was learned.
    argsrepr_maxsize: int
    kwargsrepr_maxsize: int
    repr_maxlevels: int
    verified: bool = False


class MessageTemplates:
    """The templates of the messages published on one producer channel."""

    def __init__(self, *, base64_envelope: bool) -> None:
        self.base64_envelope = base64_envelope
        # None: this shape's messages could not be reproduced; it stays on apply_async.
        self._shapes: dict[str, _Template | None] = {}

    def encode(
        self, job: OutboundJob, options: dict[str, Any], celery_encode: Callable[[], SqsMessage]
    ) -> SqsMessage:
        """`job`'s message, as `celery_encode` (apply_async) would make it with `options`."""
        shape = _shape(job, options)
        if shape is None:
            return celery_encode()
        if shape not in self._shapes:
            message = celery_encode()
            if len(self._shapes) < MAX_SHAPES:
                try:
                    self._shapes[shape] = self._learn(job, options, message)
                except Exception:  # a message unlike what we know: leave it to Celery
                    logger.exception("cannot learn a template from %s", job.task.name)
                    self._shapes[shape] = None
            return message
        template = self._shapes[shape]
        if template is None:
            return celery_encode()
        if template.verified:
            return _fill(template, job, options)
        message = celery_encode()
        if self._reproduces(template, job, options, message):
            template.verified = True
        else:
            self._shapes[shape] = None
            logger.warning(
                "messages of %s cannot be reproduced from a template, so each is encoded by "
                "apply_async (slower, same result)",
                job.task.name,
            )
        return message

    @staticmethod
    def _reproduces(
        template: _Template, job: OutboundJob, options: dict[str, Any], message: SqsMessage
    ) -> bool:
        try:
            tag = _envelope(message, template.base64_envelope)["properties"]["delivery_tag"]
            return _fill(template, job, options, delivery_tag=tag) == message
        except Exception:
            # Celery made this message; a template that cannot must not cost the job.
            logger.exception("template of %s failed", job.task.name)
            return False

    def __len__(self) -> int:
        """How many shapes of message this channel has met (with a template or without)."""
        return len(self._shapes)

    def _learn(
        self, job: OutboundJob, options: dict[str, Any], message: SqsMessage
    ) -> _Template | None:
        envelope = _envelope(message, self.base64_envelope)
        headers, properties = envelope["headers"], envelope["properties"]
        if (
            headers.get("id") != job.task_id
            or headers.get("root_id") != job.task_id
            or properties.get("correlation_id") != job.task_id
            or properties.get("body_encoding") != "base64"
            or "compression" in headers
        ):
            return None
        serializer = serialization.registry.type_to_name.get(envelope["content-type"])
        if serializer is None:
            return None
        _, _, embed = json.loads(base64.b64decode(envelope["body"]))
        task = _task_object(job.task)
        return _Template(
            task=task,
            message=message,
            envelope=envelope,
            embed=embed,
            serializer=serializer,
            header_names=tuple(options.get("headers", {})),
            base64_envelope=self.base64_envelope,
            argsrepr_maxsize=task.app.amqp.argsrepr_maxsize,
            kwargsrepr_maxsize=task.app.amqp.kwargsrepr_maxsize,
            repr_maxlevels=task.app.conf.task_repr_maxlevels,
        )


_by_channel: weakref.WeakKeyDictionary[Any, MessageTemplates] = weakref.WeakKeyDictionary()
_by_channel_lock = threading.Lock()


def templates_for(producer: Producer) -> MessageTemplates:
    """The templates of `producer`'s channel (a new channel, e.g. after the broker's
    address changed, learns its own: a template holds its queue's URL and client)."""
    channel = producer.channel
    with _by_channel_lock:  # the relay's thread and a beat or test thread may both ask
        templates = _by_channel.get(channel)
        if templates is None:
            templates = MessageTemplates(
                base64_envelope=bool(getattr(channel, "sqs_base64_encoding", False))
            )
            _by_channel[channel] = templates
    return templates


def templating_allowed(app: Celery, producer: Producer) -> bool:
    """Whether nothing in this process may change a message per job behind Celery's back."""
    if getattr(producer.channel, "transport_options", {}).get("sts_role_arn"):
        return False  # the channel renews its SQS client as its credentials expire
    if (
        signals.before_task_publish.receivers
        or signals.after_task_publish.receivers
        or signals.task_sent.receivers
    ):
        return False
    if any(
        hasattr(function, "__wrapped__")
        for function in (Task.apply_async, Celery.send_task, Producer.publish)
    ):
        return False
    if app.conf.task_always_eager or app.conf.task_send_sent_event:
        return False
    if app.current_worker_task is not None:
        return False  # the message would name it as parent
    # Routes that depend only on the task's name and options (ours, or a mapping).
    return all(route is route_task or isinstance(route, MapRoute) for route in app.amqp.routes)


def _shape(job: OutboundJob, options: dict[str, Any]) -> str | None:
    task = _task_object(job.task)
    if not options.keys() <= TEMPLATABLE_OPTIONS:
        return None
    if (
        type(task).apply_async is not Task.apply_async
        or type(task).shadow_name is not Task.shadow_name
        or getattr(task, "__v2_compat__", False)
        or getattr(task, "_dump_pydantic_arguments", None) is not None
    ):
        return None
    # Per-job values (header values, given argument reprs) are filled in; only their
    # names are part of the shape.
    fixed = {name: value for name, value in options.items() if name not in PER_JOB_OPTIONS}
    try:
        described = json.dumps(fixed, sort_keys=True)
    except (TypeError, ValueError):
        return None
    given = ",".join(sorted(options.keys() & PER_JOB_OPTIONS))
    headers = ",".join(options.get("headers", {}))
    task_class = f"{type(task).__module__}.{type(task).__qualname__}"
    return f"{task_class}|{task.name}|{described}|{given}|{headers}"


def _task_object(task: Task) -> Task:
    # A task declared before the app was finalized is a lazy proxy to the task object.
    return task._get_current_object() if isinstance(task, Proxy) else task


def _envelope(message: SqsMessage, base64_envelope: bool) -> dict[str, Any]:
    body = message.arguments["MessageBody"]
    return json.loads(base64.b64decode(body) if base64_envelope else body)


def _fill(
    template: _Template,
    job: OutboundJob,
    options: dict[str, Any],
    *,
    delivery_tag: str | None = None,
) -> SqsMessage:
    task = template.task
    # As apply_async and as_task_v2 take them.
    args, kwargs = job.args or (), job.kwargs or {}
    if task.typing:
        task.__header__(*args, **kwargs)  # Celery's check of the arguments against the task
    headers = dict(template.envelope["headers"])
    headers["id"] = headers["root_id"] = job.task_id
    # Given reprs go in as given; else Celery's saferepr, as as_task_v2 writes them.
    maxlevels = template.repr_maxlevels
    argsrepr, kwargsrepr = options.get("argsrepr"), options.get("kwargsrepr")
    if argsrepr is None:
        argsrepr = saferepr(args, template.argsrepr_maxsize, maxlevels=maxlevels)
    if kwargsrepr is None:
        kwargsrepr = saferepr(kwargs, template.kwargsrepr_maxsize, maxlevels=maxlevels)
    headers["argsrepr"], headers["kwargsrepr"] = argsrepr, kwargsrepr
    for name in template.header_names:
        headers[name] = options["headers"][name]
    properties = dict(template.envelope["properties"])
    properties["correlation_id"] = job.task_id
    properties["delivery_tag"] = delivery_tag or uuid()
    for name in ("argsrepr", "kwargsrepr"):
        if name in options:
            # Celery passes the options it was given on to kombu as message properties.
            properties[name] = options[name]
    _, _, body = serialization.dumps((args, kwargs, template.embed), serializer=template.serializer)
    envelope = {
        **template.envelope,
        "body": base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode(),
        "headers": headers,
        "properties": properties,
    }
    text = kombu_json_dumps(envelope)
    if template.base64_envelope:
        text = base64.b64encode(text.encode()).decode()
    return SqsMessage(template.message.client, {**template.message.arguments, "MessageBody": text})
