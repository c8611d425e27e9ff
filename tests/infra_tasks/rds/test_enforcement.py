"""Enforcement: a database that came back on its own is stopped again, the divergence is
recorded, and staff hear about it when it is still off after a retry."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction
from django_celery_results.models import TaskResult

from infra_tasks.rds.jobs import DATABASES_ENFORCE, ENFORCE_SCHEDULE_NAME
from infra_tasks.rds.models import (
    ActionState,
    DatabaseAction,
    DesiredState,
    Divergence,
    ManagedDatabase,
)
from infra_tasks.rds.services.actions import database_action_request
from infra_tasks.rds.services.enforcement import databases_enforce
from tests.infra_tasks.rds.support import aws_status, finished, new_instance, register
from tests.support.broker import publishing_to
from tests.support.servers import (
    AwsEndpoint,
    WorkerProcess,
    new_queue_prefix,
    own_queues_create,
    wait_until,
)
from workers.devstack import free_port
from workers.enqueue import Requester, job_enqueue
from workers.models import Job
from workers.outbox import broker_health, relay
from workers.queues import QUEUES
from workers.selectors import job_log_since
from workers.services import job_republish_unsent

pytestmark = pytest.mark.django_db(transaction=True)


def enforcement_pass(requester: Requester | None = None) -> dict:
    with transaction.atomic():
        task_id = job_enqueue(
            DATABASES_ENFORCE, requester=requester or Requester.schedule(ENFORCE_SCHEDULE_NAME)
        )

    def succeeded() -> bool:
        return TaskResult.objects.filter(task_id=task_id, status="SUCCESS").exists()

    wait_until(succeeded, timeout=60, message="the enforcement pass")
    report = json.loads(TaskResult.objects.get(task_id=task_id).result)
    report["task_id"] = task_id
    return report


def test_database_started_out_of_band_is_stopped_again_and_the_divergence_recorded(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    database = register(new_instance(aws))
    finished(
        database_action_request(database=database, action="stop", requester=Requester.cli("t"))
    )
    # AWS's automatic restart after seven days, or someone in the console.
    aws.client("rds").start_db_instance(DBInstanceIdentifier=database.identifier)

    report = enforcement_pass()

    assert report["diverged"] == [database.name]
    divergence = Divergence.objects.get(database=database)
    assert (divergence.desired_state, divergence.observed_status) == (
        DesiredState.STOPPED,
        "available",
    )
    corrective = DatabaseAction.objects.get(task_id=divergence.corrective_task_id)
    assert (corrective.requester_kind, corrective.requester_label) == ("system", "rds enforcement")
    finished(corrective)
    assert corrective.state == ActionState.SUCCEEDED
    assert aws_status(aws, database) == "stopped"
    assert (
        f"{database.name}: available, should be stopped: diverged; putting it back"
        in job_log_since(task_id=report["task_id"]).lines
    )

    report = enforcement_pass()

    assert report["diverged"] == []
    divergence.refresh_from_db()
    assert divergence.resolved_at is not None
    assert divergence.notified_at is None
    assert not mail.outbox


def test_a_pass_started_by_someone_corrects_on_their_behalf(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    """The schedule's Run now: its corrections read "System: rds enforcement", not who
    pressed it."""
    database = register(new_instance(aws))
    finished(
        database_action_request(database=database, action="stop", requester=Requester.cli("t"))
    )
    aws.client("rds").start_db_instance(DBInstanceIdentifier=database.identifier)
    olga = get_user_model().objects.create_user("olga", is_staff=True)

    report = enforcement_pass(Requester.for_user(olga))

    assert report["diverged"] == [database.name]
    corrective = DatabaseAction.objects.get(
        task_id=Divergence.objects.get(database=database).corrective_task_id
    )
    assert (corrective.requester_kind, corrective.requested_by) == ("user", olga)
    assert Job.objects.get(task_id=corrective.task_id).requested_by == olga
    finished(corrective)
    assert aws_status(aws, database) == "stopped"


def test_database_in_step_is_left_alone(aws: AwsEndpoint, worker: WorkerProcess) -> None:
    database = register(new_instance(aws))  # desired running, and running

    report = enforcement_pass()

    assert report == {**report, "checked": 1, "diverged": [], "errors": []}
    assert not Divergence.objects.exists()
    assert not DatabaseAction.objects.exists()
    database.refresh_from_db()
    assert database.status == "available" and database.status_checked_at is not None


def test_staff_are_emailed_once_when_still_off_schedule_after_a_retry(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint
) -> None:
    get_user_model().objects.create_user("oncall", email="oncall@example.com", is_staff=True)
    get_user_model().objects.create_user("customer", email="c@example.com", is_staff=False)
    # A read replica cannot be stopped: putting it back fails every time.
    database = register(new_instance(aws, replica_of=new_instance(aws)))
    type(database).objects.filter(pk=database.pk).update(desired_state=DesiredState.STOPPED)
    # Run in this process; the corrective stop jobs fail wherever a worker takes them.

    first = databases_enforce(task_id="enforce-1")
    assert first["diverged"] == [database.name] and first["notified"] == []
    assert not mail.outbox
    # A corrective job is queued only while none is outstanding.
    DatabaseAction.objects.filter(database=database).update(
        state=ActionState.FAILED, message="AWS refused"
    )

    second = databases_enforce(task_id="enforce-2")
    third = databases_enforce(task_id="enforce-3")

    assert second["notified"] == [database.name]
    assert third["notified"] == []
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["oncall@example.com"]
    assert message.subject == f"[opsqueue] {database.name} is available, should be stopped"
    divergence = Divergence.objects.get(database=database)
    assert divergence.checks == 3 and divergence.notified_at is not None
    assert set(
        DatabaseAction.objects.filter(database=database).values_list(
            "requester_kind", "requester_label", "action"
        )
    ) == {("system", "rds enforcement", "stop")}


def test_with_sqs_known_down_the_pass_records_every_correction_and_sends_them_once_it_is_back(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint
) -> None:
    # The pass refused at the first diverged database (BrokerUnavailable from job_enqueue):
    # the job failed and the databases after it went unchecked until the next pass.
    first, second = (register(new_instance(aws)) for _ in range(2))
    ManagedDatabase.objects.update(desired_state=DesiredState.STOPPED)
    # Queues of the test's own, which no worker reads: the corrections stay queued, and no
    # worker of another test runs them after this test's tables are emptied.
    prefix = new_queue_prefix()
    own_queues_create(sqs_queues, prefix, QUEUES)
    with publishing_to(prefix):
        broker_health.fail(EndpointConnectionError(endpoint_url="http://127.0.0.1:9"))
        try:
            report = databases_enforce(task_id="enforce-outage")
        finally:
            broker_health.reset()

        assert report["checked"] == 2
        assert sorted(report["diverged"]) == sorted([first.name, second.name])
        corrections = DatabaseAction.objects.filter(database__in=[first, second])
        assert set(corrections.values_list("action", "state")) == {("stop", ActionState.QUEUED)}
        task_ids = set(corrections.values_list("task_id", flat=True))
        assert len(task_ids) == 2
        # Recorded, and sent once the broker answers: by the sweeper's pass, or by this
        # process's relay, which was handed them at commit and sends them as soon as SQS
        # takes them (a job's row is sent by whichever holds it; `drain` waits for the
        # relay to have marked what it sent).
        job_republish_unsent(older_than=timedelta(0))
        assert relay.drain(timeout=30)
        assert not Job.objects.filter(task_id__in=task_ids, sent_at__isnull=True).exists()


def test_a_mail_that_cannot_be_sent_keeps_the_divergence_and_the_pass_goes_on(
    aws: AwsEndpoint, sqs_queues: AwsEndpoint, settings: Any
) -> None:
    get_user_model().objects.create_user("oncall", email="oncall@example.com", is_staff=True)
    primary = new_instance(aws)
    first, second = (register(new_instance(aws, replica_of=primary)) for _ in range(2))
    ManagedDatabase.objects.update(desired_state=DesiredState.STOPPED)
    databases_enforce(task_id="enforce-1")
    DatabaseAction.objects.update(state=ActionState.FAILED, message="AWS refused")
    # Nothing listens there: every send fails with a connection error.
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_TIMEOUT = 5

    report = databases_enforce(task_id="enforce-2")

    # The first failure did not stop the pass: the second database was checked after it.
    assert report["checked"] == 2
    assert sorted(report["errors"]) == sorted([first.name, second.name])
    assert report["notified"] == []
    for database in (first, second):
        divergence = Divergence.objects.get(database=database)  # kept, not rolled back
        assert divergence.checks == 2 and divergence.notified_at is None  # the next pass retries
    lines = job_log_since(task_id="enforce-2", max_chunks=100).lines
    assert sum("could not e-mail staff" in line for line in lines) == 2

    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    DatabaseAction.objects.update(state=ActionState.FAILED)
    third = databases_enforce(task_id="enforce-3")
    assert sorted(third["notified"]) == sorted([first.name, second.name])
    assert len(mail.outbox) == 2
