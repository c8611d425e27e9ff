"""A worker SIGKILLed after it asked AWS to stop a database but before it recorded that: a
real worker process on its own SQS queues (a 6 s visibility timeout instead of 90 s),
the local endpoint's RDS, real PostgreSQL.

The moment is made deterministic with a table lock: `SHARE` on the managed databases'
table lets the worker's `SELECT ... FOR UPDATE` through (it takes `ROW SHARE`) but stops
its first write after the AWS call, the database's new status (`ROW EXCLUSIVE`). The test
waits until PostgreSQL shows the worker waiting on it, kills the worker's process group,
releases the lock and lets another worker take the message SQS hands out again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from infra_tasks.rds.models import ActionState, DatabaseAction, ManagedDatabase
from infra_tasks.rds.services.actions import database_action_request
from tests.infra_tasks.rds.support import aws_status, finished, new_instance, register
from tests.infra_tasks.rds.test_actions import scheduled
from tests.support.broker import publishing_to
from tests.support.jobs import job_status
from tests.support.servers import (
    AwsEndpoint,
    WorkerProcess,
    short_visibility_queue,
    wait_until,
)
from workers.enqueue import Requester
from workers.selectors import job_log_since

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]

VISIBILITY = 6


def _waiting_on(table: str) -> list[int]:
    """Backends of other sessions waiting for a lock on `table`."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT a.pid FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
            "WHERE NOT l.granted AND l.relation = %s::regclass AND a.wait_event_type = 'Lock'",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def job_log_lines(task_id: str) -> list[str]:
    return job_log_since(task_id=task_id).lines


def test_a_worker_killed_after_asking_aws_to_stop_leaves_the_stop_finished_by_another(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    own = short_visibility_queue(aws, worker_env, VISIBILITY)
    prefix, env = own.prefix, own.env
    database = register(new_instance(aws))
    table = ManagedDatabase._meta.db_table
    admin_user = get_user_model().objects.create_superuser("ops", "ops@example.com", "x")

    # Queued before any worker runs, so the lock is in place before one can reach the write.
    with publishing_to(prefix):
        action = database_action_request(
            database=database, action="stop", requester=Requester.for_user(admin_user)
        )
    db = connection.settings_dict
    blocker = psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname=db["NAME"],
    )
    blocker.execute(f"LOCK TABLE {table} IN SHARE MODE")
    first = WorkerProcess(env=env, queues=["infra"], log_dir=run_dir, name=f"killed-{prefix[1:-1]}")
    second: WorkerProcess | None = None
    try:
        wait_until(
            lambda: _waiting_on(table), timeout=60, message="the worker to block on its write"
        )
        assert aws_status(aws, database) == "stopped"
        action.refresh_from_db()
        assert (action.state, action.attempts) == (ActionState.RUNNING, 1)

        first.kill()
        blocker.rollback()
        blocker.close()
        wait_until(lambda: not _waiting_on(table), message="the killed worker's backend to go")
        action.refresh_from_db()
        assert action.state == ActionState.RUNNING  # nothing recorded the stop

        second = WorkerProcess(
            env=env, queues=["infra"], log_dir=run_dir, name=f"taker-{prefix[1:-1]}"
        )
        finished(action, timeout=90)
        # The action's row ends inside the task; its result is stored once the task returns.
        wait_until(
            lambda: job_status(action.task_id) == "SUCCESS", timeout=30, message="the job's result"
        )
        assert TaskResult.objects.get(task_id=action.task_id).worker == second.hostname
        # The stop this action asked for is its own, not "nothing to do" (status_before is
        # what the second attempt saw: the lost one never got to record it).
        assert (action.state, action.attempts, action.status_after) == (
            ActionState.SUCCEEDED,
            2,
            "stopped",
        )
        assert action.message == (
            "already stopped when attempt 2 looked: an earlier attempt's worker was lost,"
            " possibly after asking AWS to stop"
        )
        assert any("done: succeeded" in line for line in job_log_lines(action.task_id))
        database.refresh_from_db()
        assert database.status == "stopped"
        assert not DatabaseAction.objects.filter(state=ActionState.RUNNING).exists()

        # The nightly stop of a database already stopped: a clear "nothing to do".
        with publishing_to(prefix):
            firing = scheduled(database, "stop")
        wait_until(lambda: job_status(firing) == "SUCCESS", timeout=60, message="the firing")
        again = DatabaseAction.objects.get(task_id=firing)
        assert (again.state, again.message) == (ActionState.NOOP, "already stopped")
        assert json.loads(TaskResult.objects.get(task_id=firing).result)["state"] == "noop"

        client = Client()
        client.force_login(admin_user)
        page = client.get(reverse("admin:rds_manageddatabase_change", args=[database.pk]))
        assert re.search(
            r'field-status\b.*?<div class="readonly">stopped</div>', page.content.decode(), re.S
        )
        record_page = client.get(reverse("admin:rds_databaseaction_change", args=[action.pk]))
        assert "possibly after asking AWS to stop" in record_page.content.decode()
        listing = client.get(
            reverse("admin:rds_databaseaction_changelist") + f"?database__id__exact={database.pk}"
        ).content.decode()
        assert listing.count("Succeeded</td>") == 1
        assert listing.count("Nothing to do</td>") == 1
        assert "Running</td>" not in listing
    finally:
        if not blocker.closed:
            blocker.close()
        first.stop()
        if second is not None:
            second.stop()
        aws.client("sqs").purge_queue(QueueUrl=own.url)
