"""Jobs over the SQS endpoint with a real worker process and real PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.broker import (
    drop_broker_connections,
    forget_broker_pools,
    publishing_to,
    reset_broker_pools,
)
from tests.support.jobs import job_status
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.devstack import free_port
from workers.enqueue import BrokerUnavailable, Requester, job_record_pending
from workers.models import DiagnosticRun, Job, RequesterKind
from workers.outbox import broker_health, relay
from workers.selectors import job_log_since
from workers.services import diagnostic_run_start, job_republish_unsent

pytestmark = pytest.mark.django_db(transaction=True)


def test_job_round_trip_pending_started_success_with_requester_and_live_log(
    worker: WorkerProcess, worker_env: dict[str, str]
) -> None:
    user = get_user_model().objects.create_user("alice", is_staff=True)
    run = diagnostic_run_start(requester=Requester.for_user(user), lines=40, duration_seconds=3)

    # Recorded before any worker touches it: PENDING, with who asked.
    job = Job.objects.get(task_id=run.task_id)
    assert (job.requester_kind, job.requester_label, job.requested_by) == (
        RequesterKind.USER,
        "alice",
        user,
    )
    assert job.queue == "default"
    result = TaskResult.objects.get(task_id=run.task_id)
    assert result.task_name == "workers.tasks.diagnostic_run_execute"
    assert json.loads(result.task_args) == [run.pk]
    assert LogEntry.objects.filter(user=user, object_id=str(run.pk)).exists()

    wait_until(lambda: job_status(run.task_id) == "STARTED", timeout=30, message="STARTED")
    assert TaskResult.objects.get(task_id=run.task_id).worker == worker.hostname

    # Another connection reads the log while the task is still running.
    with psycopg.connect(
        worker_env["DATABASE_URL"].replace("postgres://", "postgresql://")
    ) as other:

        def lines_seen_elsewhere() -> int:
            row = other.execute(
                "SELECT coalesce(max(end_line), 0) FROM workers_joblogchunk WHERE task_id = %s",
                [run.task_id],
            ).fetchone()
            return row[0] if row else 0

        wait_until(lambda: lines_seen_elsewhere() > 0, timeout=10, message="first log lines")
        assert job_status(run.task_id) == "STARTED"
        assert lines_seen_elsewhere() < 41

    wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=30, message="SUCCESS")
    result = TaskResult.objects.get(task_id=run.task_id)
    assert json.loads(result.result) == {"run": run.pk, "lines": 40, "attempts": 1}
    assert result.date_started is not None and result.date_done is not None
    lines = job_log_since(task_id=run.task_id).lines
    assert lines[0] == "diagnostic line 1/40"
    assert lines[-1] == f"done: run {run.pk}, 40 lines, attempt 1", "words, not a Python dict"
    assert Job.objects.get(task_id=run.task_id).progress_done == 40


def test_failing_job_ends_failure_with_traceback_and_its_log(worker: WorkerProcess) -> None:
    run = diagnostic_run_start(
        requester=Requester.cli("test"), lines=5, duration_seconds=0.1, fail=True
    )
    wait_until(lambda: job_status(run.task_id) == "FAILURE", timeout=30, message="FAILURE")
    result = TaskResult.objects.get(task_id=run.task_id)
    assert "DiagnosticFailure" in result.traceback
    assert job_log_since(task_id=run.task_id).lines[-1].startswith("!! DiagnosticFailure")
    assert DiagnosticRun.objects.get(pk=run.pk).state == DiagnosticRun.State.FAILED


def test_broker_unreachable_at_enqueue_leaves_nothing_behind(
    sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = get_user_model().objects.create_user("bob", is_staff=True)
    # A port nothing listens on; fresh connections so no pooled client hides the outage.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    drop_broker_connections()
    try:
        with pytest.raises(BrokerUnavailable, match="unreachable"):
            diagnostic_run_start(requester=Requester.for_user(user), lines=5)
    finally:
        monkeypatch.undo()
        drop_broker_connections()

    assert not DiagnosticRun.objects.exists()
    assert not TaskResult.objects.exists()
    assert not Job.objects.exists()
    assert not LogEntry.objects.exists()


@pytest.mark.waits
def test_broker_lost_after_a_job_is_accepted_keeps_the_job_and_sends_it_when_back(
    worker: WorkerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:

    user = get_user_model().objects.create_user("erin", is_staff=True)
    broker_health.confirm()  # the broker was fine a moment ago...
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    reset_broker_pools()  # ...and is unreachable now
    run = diagnostic_run_start(requester=Requester.for_user(user), lines=3, duration_seconds=0.1)

    assert not relay.drain(timeout=2), "the relay should still be retrying"
    job = Job.objects.get(task_id=run.task_id)
    assert job.sent_at is None and job_status(run.task_id) == "PENDING"

    monkeypatch.undo()
    forget_broker_pools()  # the relay is retrying the job meanwhile
    assert relay.drain(timeout=60)
    wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=30, message="SUCCESS")
    assert Job.objects.get(task_id=run.task_id).sent_at is not None


def test_job_stranded_in_the_outbox_is_sent_by_the_sweeper_and_its_page_says_it_waits(
    worker: WorkerProcess, client: Client
) -> None:
    from workers.outbox import OutboundJob
    from workers.tasks import diagnostic_run_execute

    client.force_login(get_user_model().objects.create_superuser("root"))

    def page() -> str:
        url = reverse("workers:job-detail", args=["stranded-1"])
        return client.get(url, follow=True).content.decode()

    run = DiagnosticRun.objects.create(lines=3, duration_seconds=0.1)
    # What a process that died before its relay sent the message leaves behind.
    job_record_pending(
        OutboundJob(diagnostic_run_execute, "stranded-1", [run.pk], {}, {"queue": "default"}),
        requester=Requester.system("test"),
    )
    Job.objects.filter(task_id="stranded-1").update(
        created_at=timezone.now() - timedelta(minutes=5)
    )

    # Queued, and not just waiting for a worker: nothing has reached SQS yet.
    assert 'id="job-unsent"' in page()

    assert job_republish_unsent() == 1
    assert 'id="job-unsent"' not in page()
    wait_until(lambda: job_status("stranded-1") == "SUCCESS", timeout=30, message="SUCCESS")
    assert job_republish_unsent() == 0


@pytest.mark.waits
def test_worker_killed_mid_task_gets_the_job_again_and_completes_once(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    # Own queues with a short visibility timeout, so SQS redelivers within the test.
    prefix = new_queue_prefix()
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix, "SQS_VISIBILITY_TIMEOUT_SECONDS": "3"}
    sqs = aws.client("sqs")
    queue_url = sqs.create_queue(
        QueueName=f"{prefix}default", Attributes={"VisibilityTimeout": "3"}
    )["QueueUrl"]

    first = WorkerProcess(env=env, queues=["default"], log_dir=run_dir)
    try:
        run = _start_diagnostic_on(prefix, lines=50, duration_seconds=4)
        wait_until(
            lambda: len(job_log_since(task_id=run.task_id).lines) >= 5,
            timeout=30,
            message="the first attempt to be under way",
        )
    finally:
        first.kill()
    assert job_status(run.task_id) == "STARTED"

    second = WorkerProcess(env=env, queues=["default"], log_dir=run_dir)
    try:
        wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=60, message="SUCCESS")
    finally:
        second.stop()
    run.refresh_from_db()
    assert run.state == DiagnosticRun.State.SUCCEEDED
    assert run.attempts == 2
    lines = job_log_since(task_id=run.task_id).lines
    assert "-- delivered again: attempt 2 starts over --" in lines
    assert sum(1 for line in lines if line.startswith("done:")) == 1
    sqs.purge_queue(QueueUrl=queue_url)


def test_same_message_delivered_twice_does_no_harm(worker: WorkerProcess) -> None:
    from workers.tasks import diagnostic_run_execute

    run = diagnostic_run_start(requester=Requester.cli("test"), lines=3, duration_seconds=0.1)
    wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=30, message="first delivery")
    done_at = DiagnosticRun.objects.get(pk=run.pk).finished_at

    # The same message again, same task id: what SQS does on an at-least-once redelivery.
    diagnostic_run_execute.apply_async(args=[run.pk], task_id=run.task_id)
    wait_until(
        # Dropped by the claim's look at the result: a succeeded job is not run again.
        lambda: f"[{run.task_id}] ignored" in worker.log_text(),
        timeout=30,
        message="the second delivery to be processed",
    )
    run.refresh_from_db()
    assert run.attempts == 1
    assert run.finished_at == done_at
    assert TaskResult.objects.get(task_id=run.task_id).status == "SUCCESS"
    assert json.loads(TaskResult.objects.get(task_id=run.task_id).result) == run.summary
    assert (
        sum(1 for line in job_log_since(task_id=run.task_id).lines if line.startswith("done:")) == 1
    )


def test_a_failed_job_delivered_again_is_not_run_again_and_keeps_its_failure(
    worker: WorkerProcess,
) -> None:
    """A late or duplicate copy (a DeleteMessage lost in an outage, a send that timed out
    but reached SQS) ran a failed job again under its own id: its failure was overwritten by
    a success nobody asked for. Retry makes a new job; the copy is dropped."""
    from workers.tasks import diagnostic_run_execute

    run = diagnostic_run_start(
        requester=Requester.cli("test"), lines=3, duration_seconds=0.1, fail=True
    )
    wait_until(lambda: job_status(run.task_id) == "FAILURE", timeout=30, message="the failure")
    failed = TaskResult.objects.get(task_id=run.task_id)

    diagnostic_run_execute.apply_async(args=[run.pk], task_id=run.task_id)
    wait_until(
        lambda: f"[{run.task_id}] ignored" in worker.log_text(),
        timeout=30,
        message="the second delivery to be processed",
    )
    assert f"[{run.task_id}]: it ended already (FAILURE); not run again" in worker.log_text()
    run.refresh_from_db()
    assert run.attempts == 1 and run.state == DiagnosticRun.State.FAILED
    again = TaskResult.objects.get(task_id=run.task_id)
    assert (again.status, again.result, again.date_done) == (
        "FAILURE",
        failed.result,
        failed.date_done,
    )


def _start_diagnostic_on(prefix: str, **kwargs: object) -> DiagnosticRun:
    """Start a diagnostic run whose message goes to the queues named with `prefix`."""
    with publishing_to(prefix):
        return diagnostic_run_start(requester=Requester.cli("test"), **kwargs)  # type: ignore[arg-type]


def test_arguments_that_are_not_json_are_refused_at_enqueue_and_nothing_is_recorded(
    sqs_queues: AwsEndpoint,
) -> None:
    from workers.enqueue import job_enqueue
    from workers.tasks import diagnostic_run_execute

    with pytest.raises(TypeError, match="not JSON serializable"):
        job_enqueue(diagnostic_run_execute, requester=Requester.cli("test"), args=[object()])
    assert not Job.objects.exists() and not TaskResult.objects.exists()


def test_a_job_killed_at_its_hard_time_limit_ends_its_domain_row_too(
    worker: WorkerProcess,
) -> None:
    """The worker's main process kills the job's process and records FAILURE; the job's own
    code, which ends its record, never runs to its end: the family's handler does it."""
    from django.db import transaction

    from workers.enqueue import job_enqueue, new_task_id
    from workers.jobs import DIAGNOSTIC_RUN_EXECUTE

    with transaction.atomic():
        run = DiagnosticRun.objects.create(lines=60, duration_seconds=60, task_id=new_task_id())
        job_enqueue(
            DIAGNOSTIC_RUN_EXECUTE,
            requester=Requester.cli("test"),
            args=[run.pk],
            task_id=run.task_id,
            # The hard limit first: the soft one would let the job's own code record it.
            options={"time_limit": 3, "soft_time_limit": 30},
        )

    wait_until(
        lambda: DiagnosticRun.objects.get(pk=run.pk).state == DiagnosticRun.State.FAILED,
        timeout=60,
        message="the run to end failed",
    )
    run.refresh_from_db()
    assert "killed at its hard time limit (3" in run.error
    assert job_status(run.task_id) == "FAILURE"
