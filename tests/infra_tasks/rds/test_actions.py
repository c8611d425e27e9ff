"""Stop, start, refresh, keep-running and the schedule's firings: real worker, real
moto_server, real PostgreSQL. States are checked through boto3 against the endpoint."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.utils import timezone
from django_celery_beat.schedulers import ModelEntry
from django_celery_results.models import TaskResult

from infra_tasks.rds.models import ActionState, DatabaseAction, DesiredState, ManagedDatabase
from infra_tasks.rds.schedule_times import previous_occurrence
from infra_tasks.rds.selectors import database_cron_spec
from infra_tasks.rds.services.actions import (
    OCCURRENCE_TOLERANCE,
    database_action_request,
    database_scheduled_run,
)
from infra_tasks.rds.services.schedules import database_keep_running
from tests.infra_tasks.rds.support import (
    aws_status,
    finished,
    new_cluster,
    new_instance,
    register,
)
from tests.support.jobs import job_status
from tests.support.servers import AwsEndpoint, WorkerProcess, wait_until
from workers.beat import RecordingDatabaseScheduler
from workers.celery import app
from workers.enqueue import Requester
from workers.models import Job, RequesterKind
from workers.recurring import recurring_task_run_now
from workers.selectors import job_log_since

pytestmark = pytest.mark.django_db(transaction=True)


def wait_for_job(task_id: str, status: str) -> TaskResult:
    wait_until(lambda: job_status(task_id) == status, timeout=60, message=f"{task_id} {status}")
    return TaskResult.objects.get(task_id=task_id)


def scheduled(database: ManagedDatabase, action: str) -> str:
    """Fire the database's beat entry now, through the project's beat scheduler."""
    task = database.stop_task if action == "stop" else database.start_task
    assert task is not None
    scheduler = RecordingDatabaseScheduler(app=app, lazy=True)
    result = scheduler.apply_async(ModelEntry(task, app=app), advance=False)
    return str(result.id)


def test_stop_now_stops_an_available_instance_and_records_the_wait(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    user = get_user_model().objects.create_user("ops", is_staff=True)
    database = register(new_instance(aws))

    action = database_action_request(
        database=database, action="stop", requester=Requester.for_user(user)
    )

    job = Job.objects.get(task_id=action.task_id)
    assert (job.queue, job.requester_kind, job.requested_by) == ("infra", RequesterKind.USER, user)
    assert LogEntry.objects.filter(user=user, object_id=str(database.pk)).exists()
    finished(action)
    assert action.state == ActionState.SUCCEEDED
    assert (action.status_before, action.status_after) == ("available", "stopped")
    assert action.wait_seconds is not None and action.wait_seconds >= 0
    assert aws_status(aws, database) == "stopped"
    result = wait_for_job(action.task_id, "SUCCESS")
    assert json.loads(result.result)["state"] == "succeeded"
    # The job page shows the result: how long AWS took, in tenths of a second as the log
    # says it, not 0.012015962999953445.
    assert json.loads(result.result)["wait_seconds"] == round(action.wait_seconds, 1)
    database.refresh_from_db()
    assert (database.status, database.desired_state) == ("stopped", DesiredState.STOPPED)
    lines = job_log_since(task_id=action.task_id).lines
    assert lines[0] == f"instance {database.identifier} is available; wanted stopped"
    assert lines[-1].startswith("done: succeeded (stop took")


def test_stopping_a_stopped_instance_is_a_successful_noop(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    identifier = new_instance(aws)
    aws.client("rds").stop_db_instance(DBInstanceIdentifier=identifier)
    database = register(identifier)

    action = finished(
        database_action_request(database=database, action="stop", requester=Requester.cli("t"))
    )

    assert action.state == ActionState.NOOP
    assert action.message == "already stopped"
    assert wait_for_job(action.task_id, "SUCCESS")


def test_aurora_cluster_starts_and_a_second_start_is_a_noop(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    identifier = new_cluster(aws)
    aws.client("rds").stop_db_cluster(DBClusterIdentifier=identifier)
    database = register(identifier, kind="cluster")

    first = finished(
        database_action_request(database=database, action="start", requester=Requester.cli("t"))
    )
    assert (first.state, first.status_before, first.status_after) == (
        ActionState.SUCCEEDED,
        "stopped",
        "available",
    )
    assert aws_status(aws, database) == "available"

    second = finished(
        database_action_request(database=database, action="start", requester=Requester.cli("t"))
    )
    assert (second.state, second.message) == (ActionState.NOOP, "already available")


def test_aurora_cluster_stops(aws: AwsEndpoint, worker: WorkerProcess) -> None:
    database = register(new_cluster(aws), kind="cluster")

    action = finished(
        database_action_request(database=database, action="stop", requester=Requester.cli("t"))
    )

    assert action.state == ActionState.SUCCEEDED
    assert aws_status(aws, database) == "stopped"


def test_refresh_records_the_state_aws_reports(aws: AwsEndpoint, worker: WorkerProcess) -> None:
    identifier = new_instance(aws)
    database = register(identifier)
    aws.client("rds").stop_db_instance(DBInstanceIdentifier=identifier)

    action = finished(
        database_action_request(database=database, action="refresh", requester=Requester.cli("t"))
    )

    assert action.state == ActionState.SUCCEEDED
    database.refresh_from_db()
    assert database.status == "stopped"
    assert database.status_checked_at is not None
    # A refresh does not change what the database should be.
    assert database.desired_state == DesiredState.RUNNING


def test_read_replica_cannot_be_stopped_and_the_job_fails_with_aws_reason(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    replica = new_instance(aws, replica_of=new_instance(aws))
    database = register(replica)

    action = finished(
        database_action_request(database=database, action="stop", requester=Requester.cli("t"))
    )

    assert action.state == ActionState.FAILED
    assert action.message.startswith("AWS refused: InvalidDBClusterStateFault: ")
    result = wait_for_job(action.task_id, "FAILURE")
    assert "ActionRefused" in result.traceback
    assert aws_status(aws, database) == "available"


def test_keep_running_until_makes_the_nightly_stop_skip_the_database(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    identifier = new_instance(aws)
    aws.client("rds").stop_db_instance(DBInstanceIdentifier=identifier)
    database = register(identifier)
    until = timezone.now() + timedelta(days=2)

    started = finished(
        database_keep_running(database=database, until=until, requester=Requester.cli("t"))
    )
    assert started.state == ActionState.SUCCEEDED
    assert aws_status(aws, database) == "available"

    task_id = scheduled(database, "stop")
    wait_for_job(task_id, "SUCCESS")

    skipped = DatabaseAction.objects.get(task_id=task_id)
    assert skipped.state == ActionState.SKIPPED
    assert skipped.message.startswith("kept running until ")
    assert aws_status(aws, database) == "available"
    database.refresh_from_db()
    assert database.keep_running_until == until
    assert database.desired_state == DesiredState.RUNNING


def test_scheduled_stop_acts_once_per_occurrence_even_if_fired_twice(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    database = register(new_instance(aws))

    first = scheduled(database, "stop")
    result = wait_for_job(first, "SUCCESS")
    assert json.loads(result.result)["state"] == "succeeded"
    assert aws_status(aws, database) == "stopped"
    # Someone starts it by hand; a second firing for the same 22:00 must not stop it again.
    aws.client("rds").start_db_instance(DBInstanceIdentifier=database.identifier)

    second = scheduled(database, "stop")
    result = wait_for_job(second, "SUCCESS")

    assert "duplicate_of" in json.loads(result.result)
    assert not DatabaseAction.objects.filter(task_id=second).exists()
    assert aws_status(aws, database) == "available"
    job = Job.objects.get(task_id=second)
    assert (job.requester_kind, job.requester_label) == (
        RequesterKind.SCHEDULE,
        f"rds: nightly stop of {database.name}",
    )


def test_run_now_of_a_schedule_beat_already_served_does_its_action_as_whoever_asked(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    """Run now is no second firing of the occurrence beat served: it stops the database
    again (it was started by hand since), and the action says who pressed it."""
    database = register(new_instance(aws))
    assert wait_for_job(scheduled(database, "stop"), "SUCCESS")
    aws.client("rds").start_db_instance(DBInstanceIdentifier=database.identifier)
    user = get_user_model().objects.create_superuser("ops")
    assert database.stop_task is not None

    task_id = recurring_task_run_now(periodic_task_id=database.stop_task.pk, user=user)

    result = wait_for_job(task_id, "SUCCESS")
    assert json.loads(result.result)["state"] == "succeeded"
    assert aws_status(aws, database) == "stopped"
    action = DatabaseAction.objects.get(task_id=task_id)
    assert (action.requester_kind, action.requested_by) == (RequesterKind.USER, user)
    assert job_log_since(task_id=task_id).lines[0] == (
        "started by User: ops, not by a firing of the schedule"
    )


def test_unknown_database_fails_with_aws_error_and_is_not_left_running(
    aws: AwsEndpoint, worker: WorkerProcess
) -> None:
    database = register("db-that-was-deleted")

    action = finished(
        database_action_request(database=database, action="stop", requester=Requester.cli("t"))
    )

    assert action.state == ActionState.FAILED
    assert action.message.startswith("AWS error: DBInstanceNotFound")
    assert wait_for_job(action.task_id, "FAILURE")


def test_a_scheduled_stop_delivered_again_after_a_worker_died_finishes_the_stop(
    aws: AwsEndpoint,
) -> None:
    database = register(new_instance(aws))
    # What a first delivery leaves when its worker is killed right after recording the
    # occurrence it serves and its action.
    spec = database_cron_spec(database=database, action="stop")
    assert spec is not None
    ManagedDatabase.objects.filter(pk=database.pk).update(
        last_stop_occurrence=previous_occurrence(spec, timezone.now() + OCCURRENCE_TOLERANCE),
        desired_state=DesiredState.STOPPED,
    )
    action = DatabaseAction.objects.create(
        database=database,
        action="stop",
        requester_kind="schedule",
        requester_label=database.schedule_name("stop"),
        task_id="firing-1",
        state=ActionState.RUNNING,
        attempts=1,
    )

    summary = database_scheduled_run(database_id=database.pk, action="stop", task_id="firing-1")

    assert summary is not None and summary["state"] == "succeeded"
    action.refresh_from_db()
    assert (action.state, action.attempts) == (ActionState.SUCCEEDED, 2)
    assert aws_status(aws, database) == "stopped"
    # Another firing for the same occurrence is a duplicate and does nothing.
    again = database_scheduled_run(database_id=database.pk, action="stop", task_id="firing-2")
    assert again is not None and "duplicate_of" in again
    assert not DatabaseAction.objects.filter(task_id="firing-2").exists()


def test_an_action_whose_job_ended_unseen_is_failed_not_left_running() -> None:
    """Its worker lost, or killed at its hard time limit: the action says so."""
    from infra_tasks.rds.jobs import DATABASE_ACTION_EXECUTE
    from workers.reconcile import job_ended_unseen

    database = register("unseen")
    action = DatabaseAction.objects.create(
        database=database, action="stop", state=ActionState.RUNNING, task_id="unseen-job"
    )

    job_ended_unseen(
        task_name=DATABASE_ACTION_EXECUTE.name,
        task_id="unseen-job",
        reason="killed at its hard time limit (10800 s)",
    )

    action.refresh_from_db()
    assert action.state == ActionState.FAILED and action.finished_at is not None
    assert "did not finish: killed at its hard time limit" in action.message
