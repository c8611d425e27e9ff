"""The outbox relay against a real moto_server: batched sends, one outcome per message."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from botocore.exceptions import EndpointConnectionError
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult
from kombu.exceptions import OperationalError, SerializationError

from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, new_queue_prefix, wait_until
from workers.enqueue import Requester, job_record_pending, new_task_id
from workers.models import Job
from workers.outbox import (
    BrokerHealth,
    BrokerUnavailable,
    OutboundJob,
    Relay,
    broker_health,
    broker_unreachable,
)
from workers.services import job_republish_unsent
from workers.tasks import diagnostic_run_execute

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def health_reset_after() -> Iterator[None]:
    try:
        yield
    finally:
        broker_health.reset()


def task_ids_in_queue(aws: AwsEndpoint, url: str) -> list[str]:
    sqs = aws.client("sqs")
    ids: list[str] = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        for message in messages:
            body = message["Body"]
            if not body.startswith("{"):
                body = base64.b64decode(body).decode()
            ids.append(json.loads(body)["headers"]["id"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return ids


def test_a_message_sqs_refuses_is_retried_alone_and_its_batch_mates_are_sent_once(
    aws: AwsEndpoint,
) -> None:
    prefix = new_queue_prefix()
    # A size limit small enough that one job with a long argument does not fit. SQS
    # refuses the whole batch it is in; only sending each message alone tells them apart.
    url = aws.client("sqs").create_queue(
        QueueName=f"{prefix}default", Attributes={"MaximumMessageSize": "8192"}
    )["QueueUrl"]
    small = [
        OutboundJob(diagnostic_run_execute, new_task_id(), [n], {}, {"queue": "default"})
        for n in range(10)
    ]
    too_big = OutboundJob(
        diagnostic_run_execute, new_task_id(), ["x" * 10_000], {}, {"queue": "default"}
    )
    jobs = [*small[:4], too_big, *small[4:]]
    for job in jobs:
        job_record_pending(job, requester=Requester.system("test"))

    relay = Relay(BrokerHealth())
    with publishing_to(prefix):
        relay.submit(*jobs)
        assert relay.drain(timeout=60), "the relay did not settle every job"

    received = task_ids_in_queue(aws, url)
    assert sorted(received) == sorted(job.task_id for job in small)  # each exactly once
    refused = TaskResult.objects.get(task_id=too_big.task_id)
    assert refused.status == "FAILURE"
    assert "SQS refused the message: InvalidParameterValue" in refused.traceback
    sent = set(Job.objects.filter(sent_at__isnull=False).values_list("task_id", flat=True))
    assert sent == {job.task_id for job in small}


def test_a_batch_that_breaks_the_relay_leaves_it_sending_the_next_jobs(
    aws: AwsEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """An unexpected error (here a job whose task is no Celery task) costs that batch only:
    the relay thread lives on, and its jobs stay unsent for the sweeper."""
    prefix = new_queue_prefix()
    url = aws.client("sqs").create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    broken = OutboundJob(object(), new_task_id(), [], {}, {"queue": "default"})
    good = OutboundJob(diagnostic_run_execute, new_task_id(), [1], {}, {"queue": "default"})
    job_record_pending(good, requester=Requester.system("test"))

    relay = Relay(BrokerHealth())
    relay.submit()  # nothing to send: no batch at all
    with publishing_to(prefix):
        relay.submit(broken)
        assert relay.drain(timeout=60), "the broken batch was not settled"
        relay.submit(good)
        assert relay.drain(timeout=60), "the relay stopped after the broken batch"

    assert task_ids_in_queue(aws, url) == [good.task_id]
    assert Job.objects.get(task_id=good.task_id).sent_at is not None
    assert f"relay could not send {broken.task_id}" in caplog.text


@pytest.mark.waits
def test_jobs_the_sweeper_sent_during_an_outage_are_not_sent_again_by_the_relay(
    aws: AwsEndpoint, endpoint: AwsEndpoint, caplog: pytest.LogCaptureFixture
) -> None:
    """During a long outage both the relay (retrying what it holds) and the unsent-job
    sweeper (sending what stays unsent past a minute) try the same jobs; once SQS is back,
    each job must reach it once, whichever of the two gets there first. The outage is an
    endpoint of the test's own, halted (`aws` gives this process its credentials)."""
    prefix = new_queue_prefix()
    url = endpoint.client("sqs").create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    jobs = [
        OutboundJob(diagnostic_run_execute, new_task_id(), [n], {}, {"queue": "default"})
        for n in range(3)
    ]
    for job in jobs:
        job_record_pending(job, requester=Requester.system("test"))
    warm = OutboundJob(diagnostic_run_execute, new_task_id(), [9], {}, {"queue": "default"})
    job_record_pending(warm, requester=Requester.system("test"))

    relay = Relay(BrokerHealth())
    with (
        publishing_to(prefix, endpoint_url=endpoint.url),
        caplog.at_level(logging.WARNING, logger="workers.outbox"),
    ):
        relay.submit(warm)  # the relay learns the queue's URL, as a running process has
        assert relay.drain(timeout=60)
        endpoint.halt()  # the outage: every send fails, nothing is refused
        relay.submit(*jobs)
        # Three failed tries in, the relay waits four seconds before its next one.
        wait_until(lambda: "retrying 3 job(s) each alone in 4.0s" in caplog.text, timeout=60)
        assert Job.objects.filter(sent_at__isnull=True).count() == 3
        endpoint.start()  # SQS is back (empty: its queue is made again)
        endpoint.client("sqs").create_queue(QueueName=f"{prefix}default")
        assert job_republish_unsent(older_than=timedelta(0)) == 3  # the sweeper's turn
        assert relay.drain(timeout=60), "the relay did not settle the jobs"

    received = task_ids_in_queue(endpoint, url)
    assert sorted(received) == sorted(job.task_id for job in jobs)  # each exactly once
    assert not Job.objects.filter(sent_at__isnull=True).exists()


def test_a_job_whose_arguments_do_not_fit_its_task_ends_failed_and_the_sweep_sends_the_rest(
    aws: AwsEndpoint, client: Client
) -> None:
    """A job recorded with arguments its task does not take (a schedule saved without
    them) can never become a message. The sweeper used to raise at it every minute, so
    every unsent job queued after it stayed unsent; its page read "Failed" with no reason.
    It now ends FAILURE saying why, and the jobs behind it are sent."""
    prefix = new_queue_prefix()
    url = aws.client("sqs").create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    broken = OutboundJob(diagnostic_run_execute, new_task_id(), [], {}, {"queue": "default"})
    good = OutboundJob(diagnostic_run_execute, new_task_id(), [1], {}, {"queue": "default"})
    for job in (broken, good):  # the broken one first, as the sweeper takes them
        job_record_pending(job, requester=Requester.system("test"))

    with publishing_to(prefix):
        assert job_republish_unsent(older_than=timedelta(0)) == 1
        assert job_republish_unsent(older_than=timedelta(0)) == 0  # nothing is left

    assert task_ids_in_queue(aws, url) == [good.task_id]
    assert TaskResult.objects.get(task_id=broken.task_id).status == "FAILURE"
    client.force_login(get_user_model().objects.create_superuser("root"))
    page = client.get(reverse("workers:job-detail", args=[broken.task_id]), follow=True)
    assert (
        '<pre id="job-outcome" class="job-error">JobNotSent: TypeError: diagnostic_run_execute() '
        "missing 1 required positional argument: &#x27;run_id&#x27;</pre>"
    ) in page.content.decode()


def test_a_queue_whose_sqs_queue_is_missing_holds_up_its_own_jobs_only(
    aws: AwsEndpoint, client: Client
) -> None:
    """One SQS queue deleted (by hand, or an endpoint restarted without it) is no outage.
    The relay retried that queue's job for good, sending no other job meanwhile, and
    marked the broker failed, so every new job was refused for a while; the sweeper stopped
    at that job, leaving every job queued after it unsent. Now the other queues' jobs go
    out at once, only that queue's new jobs are refused (saying how to make it again), its
    job's page says why it waits, and the sweeper sends it once the queue is back."""
    prefix = new_queue_prefix()
    sqs = aws.client("sqs")
    urls = {q: sqs.create_queue(QueueName=f"{prefix}{q}")["QueueUrl"] for q in ("default", "media")}
    health = broker_health  # the job page reads what this process's sends found
    relay = Relay(health)

    def recorded(queue: str) -> OutboundJob:
        job = OutboundJob(diagnostic_run_execute, new_task_id(), [1], {}, {"queue": queue})
        job_record_pending(job, requester=Requester.system("test"))
        return job

    # As production names its queues: no process makes a missing one again on its own.
    with publishing_to(prefix, predefined=urls), health_reset_after():
        relay.submit(recorded("default"), recorded("media"))  # as a running process has sent
        assert relay.drain(timeout=60)
        task_ids_in_queue(aws, urls["default"]), task_ids_in_queue(aws, urls["media"])
        sqs.delete_queue(QueueUrl=urls["media"])

        lost, others = recorded("media"), [recorded("default") for _ in range(3)]
        relay.submit(lost, *others)
        assert relay.drain(timeout=60), "the relay held the other queue's jobs"
        assert sorted(task_ids_in_queue(aws, urls["default"])) == sorted(
            job.task_id for job in others
        )
        assert Job.objects.get(task_id=lost.task_id).sent_at is None
        health.ensure_available()  # SQS answers: nothing else is refused
        health.ensure_queue("default")
        with pytest.raises(
            BrokerUnavailable,
            match=r"The media job queue's SQS queue does not exist .* `manage\.py sqs_queues`",
        ):
            health.ensure_queue("media")

        client.force_login(get_user_model().objects.create_superuser("root"))
        page = client.get(reverse("workers:job-detail", args=[lost.task_id]), follow=True)
        assert "Not sent to SQS: the SQS queue of the media queue does not exist" in (
            page.content.decode()
        )

        # The sweeper takes the oldest first: the lost job no longer holds up the others.
        behind = recorded("default")
        assert job_republish_unsent(older_than=timedelta(0)) == 1
        assert task_ids_in_queue(aws, urls["default"]) == [behind.task_id]
        sqs.create_queue(QueueName=f"{prefix}media")  # made again
        assert job_republish_unsent(older_than=timedelta(0)) == 1
        assert task_ids_in_queue(aws, urls["media"]) == [lost.task_id]


def test_only_the_broker_s_own_errors_leave_a_job_to_be_sent_again() -> None:
    """A job whose message does not serialize, or whose arguments do not fit its task, would
    fail the same way at every attempt: it is the job's fault, not an unreachable broker,
    though a SerializationError is a KombuError like the broker's."""
    assert broker_unreachable(OperationalError("connection refused"))
    assert broker_unreachable(EndpointConnectionError(endpoint_url="http://sqs"))
    assert broker_unreachable(ConnectionResetError())
    assert not broker_unreachable(SerializationError("cannot encode"))
    assert not broker_unreachable(TypeError("diagnostic_run_execute() missing 1 argument"))


def backends_of_this_database() -> set[int]:
    """PostgreSQL backends connected to the test database."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend'"
        )
        return {pid for (pid,) in cursor.fetchall()}


def relay_backends(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The PostgreSQL backend each batch of the relay marked its jobs "sent" on, in order,
    read in the relay's own thread (other tests' threads and workers connect too)."""
    from django.db import connection

    seen: list[int] = []
    mark_sent = Relay._mark_sent

    def marking(task_ids: list[str]) -> None:
        mark_sent(task_ids)
        seen.append(connection.connection.info.backend_pid)

    monkeypatch.setattr(Relay, "_mark_sent", staticmethod(marking))
    return seen


def recorded_jobs(count: int) -> list[OutboundJob]:
    jobs = [
        OutboundJob(diagnostic_run_execute, new_task_id(), [n], {}, {"queue": "default"})
        for n in range(count)
    ]
    for job in jobs:
        job_record_pending(job, requester=Requester.system("test"))
    return jobs


def test_the_relay_keeps_its_connection_through_a_busy_spell_and_closes_it_once_idle(
    aws: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reconnecting for every batch cost a new PostgreSQL backend per batch; a connection
    left open with nothing to send counts against the server's limit and blocks dropping
    the database."""
    monkeypatch.setattr("workers.outbox.IDLE_CONNECTION_SECONDS", 0.5)
    seen = relay_backends(monkeypatch)
    prefix = new_queue_prefix()
    aws.client("sqs").create_queue(QueueName=f"{prefix}default")
    relay = Relay(BrokerHealth())
    with publishing_to(prefix):
        relay.submit(*recorded_jobs(3))
        assert relay.drain(timeout=60)
        relay.submit(*recorded_jobs(3))
        assert relay.drain(timeout=60)
        assert relay.settle(timeout=30), "the relay did not let go of its connection"
    first, second = seen
    assert second == first  # the same connection, kept between the batches
    # And closed once idle; its backend ends a moment after the client hangs up.
    wait_until(
        lambda: first not in backends_of_this_database(),
        timeout=10,
        message="the relay's PostgreSQL backend to end",
    )
    assert not Job.objects.filter(sent_at__isnull=True).exists()


def test_jobs_sent_after_the_relays_connection_was_cut_are_still_marked_sent(
    aws: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failover or restart cuts the connection the relay keeps between batches: the next
    batch's "sent" marks are written on a new one, not lost (the sweeper would send those
    jobs a second time)."""
    from django.db import connection

    monkeypatch.setattr("workers.outbox.IDLE_CONNECTION_SECONDS", 60.0)
    seen = relay_backends(monkeypatch)
    prefix = new_queue_prefix()
    url = aws.client("sqs").create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    relay = Relay(BrokerHealth())
    with publishing_to(prefix):
        relay.submit(*recorded_jobs(2))
        assert relay.drain(timeout=60)
        (held,) = seen
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [held])
        wait_until(lambda: held not in backends_of_this_database(), timeout=10)
        relay.submit(*recorded_jobs(3))
        assert relay.drain(timeout=60)
        monkeypatch.setattr("workers.outbox.IDLE_CONNECTION_SECONDS", 0.1)
        relay.submit(*recorded_jobs(1))  # wakes the relay to see the new, shorter wait
        assert relay.settle(timeout=30)

    assert seen[1] != held  # the marks after the cut were written on a new connection
    assert not Job.objects.filter(sent_at__isnull=True).exists()
    received = task_ids_in_queue(aws, url)
    assert len(received) == len(set(received)) == 6
