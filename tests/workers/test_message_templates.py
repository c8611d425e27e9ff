"""The relay's messages filled in from templates are the messages Celery itself makes,
against a real moto_server (queue URLs are looked up there)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import celery.app.amqp
import pytest
from celery import signals
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, new_queue_prefix
from workers import message_templates
from workers.celery import app
from workers.enqueue import Requester, job_message, job_record_pending, new_task_id
from workers.message_templates import MAX_SHAPES, templates_for
from workers.models import Job, RequesterKind
from workers.outbox import (
    BrokerHealth,
    OutboundJob,
    Relay,
    encode_by_celery,
    encode_for_sqs,
    message_options,
)
from workers.sqs_batch import SqsMessage, recording_producer
from workers.tasks import diagnostic_run_execute

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def prefix(aws: AwsEndpoint) -> Iterator[str]:
    prefix = new_queue_prefix()
    for queue in ("default", "infra"):
        aws.client("sqs").create_queue(QueueName=f"{prefix}{queue}")
    with publishing_to(prefix):
        yield prefix


def envelope(message: SqsMessage) -> dict[str, Any]:
    return json.loads(base64.b64decode(message.arguments["MessageBody"]))


def by_apply_async(job: OutboundJob) -> SqsMessage:
    """The message Celery's apply_async makes for `job`, recorded instead of sent."""
    with app.producer_or_acquire() as producer, recording_producer(producer) as recorded:
        return encode_by_celery(job, message_options(job), producer, recorded)


def same_but_delivery_tag(ours: SqsMessage, celerys: SqsMessage) -> bool:
    """Byte for byte the same message once given Celery's delivery tag (a fresh uuid each)."""
    text = base64.b64decode(ours.arguments["MessageBody"]).decode()
    ours_tag = envelope(ours)["properties"]["delivery_tag"]
    text = text.replace(ours_tag, envelope(celerys)["properties"]["delivery_tag"])
    body = base64.b64encode(text.encode()).decode()
    return (
        ours.client is celerys.client
        and {**ours.arguments, "MessageBody": body} == celerys.arguments
    )


def jobs_of_every_kind() -> list[OutboundJob]:
    alice, bob = Requester(RequesterKind.USER, "alice", 1), Requester.schedule("nightly")
    made = [job_message(diagnostic_run_execute, new_task_id(), alice, [n], {}, {}) for n in (1, 2)]
    made += [
        job_message(diagnostic_run_execute, new_task_id(), bob, ['ünïcødé ✓ "quoted"'], {}, {}),
        job_message(diagnostic_run_execute, new_task_id(), alice, ["x" * 5000], {}, {}),
        job_message(diagnostic_run_execute, new_task_id(), bob, [], {"run_id": 7}, {}),
        job_message(diagnostic_run_execute, new_task_id(), alice, [[1, [2, [3, [4]]]]], {}, {}),
        job_message(
            diagnostic_run_execute,
            new_task_id(),
            alice,
            [3],
            {},
            {"time_limit": 60, "soft_time_limit": 50, "argsrepr": "[<hidden>]"},
        ),
        # Reprs given per job, as the Tasks API backend gives them: the job's own.
        job_message(
            diagnostic_run_execute,
            new_task_id(),
            alice,
            [5],
            {},
            {"argsrepr": f"[<run {uuid.uuid4()}>]", "kwargsrepr": "{}"},
        ),
        job_message(
            diagnostic_run_execute, new_task_id(), alice, [4], {}, {"queue": "infra", "priority": 3}
        ),
    ]
    return made


def test_every_message_is_byte_for_byte_what_apply_async_makes(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The first pass learns each shape's template, the second checks it, the third fills
    # every message from them without calling Celery.
    calls = []
    real_send_task = app.send_task

    def counted_send_task(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[0])
        return real_send_task(*args, **kwargs)

    for round_ in range(3):
        jobs = jobs_of_every_kind()
        calls.clear()
        with monkeypatch.context() as patch:
            patch.setattr(app, "send_task", counted_send_task)
            encoded, unencodable = encode_for_sqs(jobs)
        assert unencodable == []
        assert [job for job, _ in encoded] == jobs
        if round_ == 2:
            assert calls == []
        for job, message in encoded:
            assert same_but_delivery_tag(message, by_apply_async(job)), job


def test_options_that_vary_per_job_do_not_grow_the_templates_without_end(prefix: str) -> None:
    # A priority per job makes a shape per job: past MAX_SHAPES they are encoded by
    # apply_async and not remembered.
    requester = Requester.system("t")
    jobs = [
        job_message(
            diagnostic_run_execute, new_task_id(), requester, [n], {}, {"priority": n % 250}
        )
        for n in range(MAX_SHAPES + 50)
    ]
    encoded, unencodable = encode_for_sqs(jobs)
    assert unencodable == []
    for job, message in encoded[-5:]:
        assert same_but_delivery_tag(message, by_apply_async(job))
    with app.producer_or_acquire() as producer:
        assert len(templates_for(producer)) == MAX_SHAPES


def test_each_message_gets_its_own_delivery_tag(prefix: str) -> None:
    jobs = [
        job_message(diagnostic_run_execute, new_task_id(), Requester.system("t"), [n], {}, {})
        for n in range(6)
    ]
    encoded, _ = encode_for_sqs(jobs)
    tags = {envelope(message)["properties"]["delivery_tag"] for _, message in encoded}
    assert len(tags) == len(jobs)


@pytest.fixture
def stamping_receiver() -> Iterator[None]:
    """What a tracing library does: a header of its own on each message it sees published."""

    def stamp(headers: dict[str, Any], **kwargs: Any) -> None:
        headers["trace_id"] = uuid.uuid4().hex

    signals.before_task_publish.connect(stamp, weak=False)
    try:
        yield
    finally:
        signals.before_task_publish.disconnect(stamp)


def test_a_publish_signal_receiver_sees_and_stamps_every_message(
    prefix: str, stamping_receiver: None
) -> None:
    jobs = [
        job_message(diagnostic_run_execute, new_task_id(), Requester.system("t"), [n], {}, {})
        for n in range(5)
    ]
    encoded, _ = encode_for_sqs(jobs)
    trace_ids = {envelope(message)["headers"].get("trace_id") for _, message in encoded}
    assert None not in trace_ids
    assert len(trace_ids) == len(jobs)


def test_a_template_that_does_not_reproduce_celerys_message_is_never_used(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As a Celery upgrade might: argument reprs written differently from what the
    # template fills in. The check on a shape's second message catches it.
    real = celery.app.amqp.saferepr
    monkeypatch.setattr(celery.app.amqp, "saferepr", lambda *a, **kw: "«" + real(*a, **kw) + "»")
    jobs = [
        job_message(
            diagnostic_run_execute,
            new_task_id(),
            Requester.system("t"),
            [n],
            {},
            {"queue": "default", "priority": 9},
        )
        for n in range(6)
    ]
    encoded, _ = encode_for_sqs(jobs)
    for job, message in encoded:
        assert envelope(message)["headers"]["argsrepr"] == f"«[{job.args[0]}]»"
        assert same_but_delivery_tag(message, by_apply_async(job))


def test_a_template_that_fails_to_fill_in_costs_no_job_its_message(
    prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A fault in our own filling in (say, after a Celery upgrade) when a shape is checked:
    # Celery made the message already, so the job goes with it and the shape stays on Celery.
    def broken(*args: Any, **kwargs: Any) -> SqsMessage:
        raise RuntimeError("template broken")

    monkeypatch.setattr(message_templates, "_fill", broken)
    requester = Requester.system("t")
    jobs = [
        job_message(diagnostic_run_execute, new_task_id(), requester, [n], {}, {"priority": 7})
        for n in range(4)
    ]
    encoded, unencodable = encode_for_sqs(jobs)
    assert unencodable == []
    for job, message in encoded:
        assert same_but_delivery_tag(message, by_apply_async(job))


def test_an_argument_that_cannot_be_serialized_fails_its_job_alone(prefix: str) -> None:
    good = [
        OutboundJob(diagnostic_run_execute, new_task_id(), [n], {}, {"queue": "default"})
        for n in range(3)
    ]
    bad = OutboundJob(diagnostic_run_execute, new_task_id(), [object()], {}, {"queue": "default"})
    for job in [*good, bad]:
        # Recorded as job_enqueue would (it refuses what json cannot write, so the bad
        # one is recorded with a stand-in argument: the relay must still cope).
        stand_in = OutboundJob(job.task, job.task_id, [0], {}, job.options)
        job_record_pending(stand_in, requester=Requester.system("test"))
    health = BrokerHealth()
    relay = Relay(health)
    relay.submit(*good[:2], bad, good[2])
    assert relay.drain(timeout=60), "the relay did not settle every job"

    failed = TaskResult.objects.get(task_id=bad.task_id)
    assert failed.status == "FAILURE"
    assert "EncodeError" in failed.traceback
    sent = set(Job.objects.filter(sent_at__isnull=False).values_list("task_id", flat=True))
    assert sent == {job.task_id for job in good}
    health.ensure_available()  # still believed reachable: a bad job is not an outage
