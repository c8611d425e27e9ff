"""job_enqueue sends a job only once the caller's transaction commits."""

from __future__ import annotations

import json
from base64 import b64decode
from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, new_queue_prefix
from workers.enqueue import Requester, job_enqueue
from workers.models import DiagnosticRun, Job

pytestmark = pytest.mark.django_db(transaction=True)


class RequestFailed(Exception):
    pass


def test_a_rolled_back_transaction_sends_nothing_and_a_committed_one_sends_its_job(
    sqs_queues: AwsEndpoint,
) -> None:
    from workers.tasks import diagnostic_run_execute

    prefix = new_queue_prefix()
    sqs = sqs_queues.client("sqs")
    queue_url = sqs.create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    with publishing_to(prefix):
        with pytest.raises(RequestFailed), transaction.atomic():
            rolled_back = job_enqueue(
                diagnostic_run_execute, requester=Requester.cli("test"), args=[1]
            )
            raise RequestFailed
        with transaction.atomic():
            committed = job_enqueue(
                diagnostic_run_execute, requester=Requester.cli("test"), args=[2]
            )
    # publishing_to waited for the relay to send everything it was given.

    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
    task_ids = [
        json.loads(b64decode(message["Body"]))["headers"]["id"]
        for message in received.get("Messages", [])
    ]
    assert task_ids == [committed]
    assert rolled_back != committed
    assert list(Job.objects.values_list("task_id", flat=True)) == [committed]


def test_a_person_s_job_is_recorded_with_its_history_entry_in_one_round_trip(
    sqs_queues: AwsEndpoint,
) -> None:
    from workers.tasks import diagnostic_run_execute

    user = get_user_model().objects.create_user("ada", is_staff=True)
    run = DiagnosticRun.objects.create()
    prefix = new_queue_prefix()
    sqs_queues.client("sqs").create_queue(QueueName=f"{prefix}default")
    with publishing_to(prefix):
        with transaction.atomic(), CaptureQueriesContext(connection) as on_run:
            on_run_id = job_enqueue(
                diagnostic_run_execute,
                requester=Requester.for_user(user),
                args=[run.pk],
                audit_object=run,
            )
        with transaction.atomic(), CaptureQueriesContext(connection) as on_job:
            on_job_id = job_enqueue(
                diagnostic_run_execute, requester=Requester.for_user(user), args=[run.pk]
            )

    def inserts(queries: CaptureQueriesContext) -> list[str]:
        return [q["sql"] for q in queries.captured_queries if q["sql"].startswith("INSERT")]

    # Job, TaskResult and LogEntry in one statement batch; an entry about the Job itself
    # waits for the Job's id.
    assert len(inserts(on_run)) == 1 and inserts(on_run)[0].count("INSERT INTO") == 3
    assert len(inserts(on_job)) == 2
    about_run = LogEntry.objects.get(change_message__contains=on_run_id)
    assert (about_run.get_edited_object(), about_run.user) == (run, user)
    about_job = LogEntry.objects.get(change_message__contains=on_job_id)
    assert about_job.get_edited_object() == Job.objects.get(task_id=on_job_id)
    assert about_job.change_message == f"Queued job {diagnostic_run_execute.name} [{on_job_id}]"
    assert TaskResult.objects.get(task_id=on_job_id).status == "PENDING"


def test_headers_given_cannot_choose_the_task_its_id_or_its_requester() -> None:
    """Celery lets extra headers overwrite its own and a worker runs the task its "task"
    header names: whatever a caller or a schedule passes, the message names its own task."""
    from workers.enqueue import job_message, new_task_id
    from workers.tasks import diagnostic_run_execute

    message = job_message(
        diagnostic_run_execute,
        new_task_id(),
        Requester.cli("test"),
        [1],
        {},
        {
            "headers": {
                "task": "infra_tasks.releases.tasks.release_execute",
                "id": "someone-else",
                "opsqueue_requester": {"kind": "user", "label": "root", "user_id": 1},
                "opsqueue_deferred_job": "another-job",
                "trace": "kept",
            }
        },
    )
    assert message.options["headers"] == {
        "trace": "kept",
        "opsqueue_requester": Requester.cli("test").as_header(),
    }


def test_a_beat_entry_is_taken_for_a_deferred_job_only_if_it_is_that_job_s_own() -> None:
    from workers.deferred import deferred_entry_name, is_deferred_entry
    from workers.enqueue import job_message, job_record_pending, new_task_id
    from workers.tasks import diagnostic_run_execute

    task_id = new_task_id()
    job_record_pending(
        job_message(diagnostic_run_execute, task_id, Requester.cli("test"), [1], {}, {}),
        requester=Requester.cli("test"),
    )
    name = deferred_entry_name(task_id)
    assert is_deferred_entry(name, diagnostic_run_execute.name, task_id)
    assert not is_deferred_entry("my schedule", diagnostic_run_execute.name, task_id)
    assert not is_deferred_entry(name, "infra_tasks.releases.tasks.release_execute", task_id)


def test_a_job_for_a_queue_no_worker_reads_is_refused_before_anything_is_recorded(
    sqs_queues: AwsEndpoint,
) -> None:
    """Sent to `bogus`, a job read Queued (PENDING) for good: no worker reads it. Every
    path (job_enqueue, a batch, beat's job_publish) makes its message in job_message."""
    from workers.enqueue import JobQueueRefused, JobRequest, job_enqueue_many, job_publish
    from workers.tasks import diagnostic_run_execute

    requester = Requester.cli("test")
    prefix = new_queue_prefix()
    sqs_queues.client("sqs").create_queue(QueueName=f"{prefix}default")
    with (
        publishing_to(prefix),
        pytest.raises(JobQueueRefused, match="No worker reads a queue named “bogus”"),
    ):
        job_enqueue(
            diagnostic_run_execute,
            requester=requester,
            args=[1],
            queue="bogus",
            refuse_if_broker_down=False,
        )
    with publishing_to(prefix), pytest.raises(JobQueueRefused):
        job_publish(
            diagnostic_run_execute, task_id="t-bogus", requester=requester, args=[1], queue="bogus"
        )
    with publishing_to(prefix), pytest.raises(JobQueueRefused):
        job_enqueue_many(
            [JobRequest(diagnostic_run_execute, [1], {}, "bogus")], requester=requester
        )
    assert not Job.objects.exists() and not TaskResult.objects.exists()


@pytest.mark.parametrize(
    "route",
    [
        {"exchange": "bogus", "routing_key": "bogus"},
        {"exchange": "default", "routing_key": "bogus"},
        {"routing_key": "media"},
        {"exchange": "bogus"},
    ],
    ids=["both-bogus", "routing-key-bogus", "routing-key-another-queue", "exchange-bogus"],
)
def test_a_job_routed_elsewhere_than_its_queue_is_refused_before_anything_is_recorded(
    sqs_queues: AwsEndpoint, route: dict[str, Any]
) -> None:
    """Celery prefers a given exchange and routing key to the queue's: on SQS, `bogus`
    under an exchange reached no queue at all (SQS took nothing, Celery said nothing), and
    the job read Queued (PENDING) for good. Only the queue's own values make sense."""
    from workers.enqueue import JobQueueRefused, job_publish
    from workers.tasks import diagnostic_run_execute

    requester = Requester.cli("test")
    prefix = new_queue_prefix()
    sqs = sqs_queues.client("sqs")
    urls = [sqs.create_queue(QueueName=f"{prefix}{q}")["QueueUrl"] for q in ("default", "media")]
    with publishing_to(prefix), pytest.raises(JobQueueRefused, match="On SQS a job goes to"):
        job_publish(diagnostic_run_execute, task_id="t-x", requester=requester, args=[1], **route)
    with publishing_to(prefix), pytest.raises(JobQueueRefused, match="On SQS a job goes to"):
        job_enqueue(
            diagnostic_run_execute,
            requester=requester,
            args=[1],
            options=route,
            refuse_if_broker_down=False,
        )
    assert not Job.objects.exists() and not TaskResult.objects.exists()
    for url in urls:
        assert "Messages" not in sqs.receive_message(QueueUrl=url, WaitTimeSeconds=0)


def test_a_job_given_its_queue_s_own_exchange_and_routing_key_reaches_that_queue(
    sqs_queues: AwsEndpoint,
) -> None:
    from workers.tasks import diagnostic_run_execute

    prefix = new_queue_prefix()
    sqs = sqs_queues.client("sqs")
    url = sqs.create_queue(QueueName=f"{prefix}default")["QueueUrl"]
    with publishing_to(prefix):
        task_id = job_enqueue(
            diagnostic_run_execute,
            requester=Requester.cli("test"),
            args=[1],
            options={"exchange": "default", "routing_key": "default"},
        )
    [message] = sqs.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
    envelope = json.loads(b64decode(message["Body"]))
    assert envelope["headers"]["id"] == task_id
    assert envelope["properties"]["delivery_info"]["routing_key"] == "default"
