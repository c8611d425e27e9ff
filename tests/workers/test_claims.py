"""Duplicate deliveries do nothing twice, also when they arrive at the same moment."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.broker import publishing_to
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.claims import RECHECK_HEADER, Claim, ClaimedTask, job_claim, job_claim_release
from workers.enqueue import RESERVED_HEADERS, Requester
from workers.models import DiagnosticRun, Job
from workers.selectors import job_log_since
from workers.services import diagnostic_run_start
from workers.tasks import diagnostic_run_execute

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def workers_on_a_queue(
    aws: AwsEndpoint,
    worker_env: dict[str, str],
    run_dir: Path,
    *names: str,
    visibility_seconds: int | None = None,
) -> Iterator[tuple[str, str, list[WorkerProcess]]]:
    """Workers named `names` on a `default` queue of their own; yields the queue prefix,
    the queue's URL and the workers, and stops them afterwards."""
    prefix = new_queue_prefix()
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix}
    attributes = {}
    if visibility_seconds is not None:
        attributes = {"VisibilityTimeout": str(visibility_seconds)}
        env["SQS_VISIBILITY_TIMEOUT_SECONDS"] = str(visibility_seconds)
    url = aws.client("sqs").create_queue(QueueName=f"{prefix}default", Attributes=attributes)
    workers = [
        WorkerProcess(env=env, queues=["default"], log_dir=run_dir, name=f"{n}-{prefix[1:-1]}")
        for n in names
    ]
    try:
        yield prefix, url["QueueUrl"], workers
    finally:
        for worker in workers:
            worker.stop()


def test_the_same_message_delivered_to_two_workers_at_once_does_the_work_once(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    from workers.tasks import diagnostic_run_execute

    sqs = aws.client("sqs")
    with workers_on_a_queue(aws, worker_env, run_dir, "dup-1", "dup-2") as (prefix, url, workers):
        with publishing_to(prefix):
            run = diagnostic_run_start(
                requester=Requester.cli("test"), lines=20, duration_seconds=3
            )
            # The same message again, at once: what SQS does when it delivers twice.
            diagnostic_run_execute.apply_async(args=[run.pk], task_id=run.task_id)
        wait_until(
            lambda: all(f"[{run.task_id}] received" in w.log_text() for w in workers),
            message="both workers to receive the job",
        )
        wait_until(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            message="the job to succeed",
        )
        wait_until(lambda: _count(sqs, url) == 0, message="both messages to be acknowledged")
        # Side effects, counted: one attempt, one pass through the work, one result.
        run.refresh_from_db()
        assert run.attempts == 1
        lines = job_log_since(task_id=run.task_id).lines
        assert sum(line.startswith("done:") for line in lines) == 1
        assert sum(line == "diagnostic line 1/20" for line in lines) == 1
        duplicate = f"duplicate delivery of workers.tasks.diagnostic_run_execute [{run.task_id}]"
        assert sum(duplicate in worker.log_text() for worker in workers) == 1


def _count(sqs: object, url: str, *, delayed: bool = False) -> int:
    """Messages in the queue: visible and in flight, and with `delayed` those SQS holds back."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    if delayed:
        names.append("ApproximateNumberOfMessagesDelayed")
    attributes = sqs.get_queue_attributes(  # type: ignore[attr-defined]
        QueueUrl=url, AttributeNames=names
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def test_of_many_concurrent_claims_on_one_job_exactly_one_wins(sqs_queues: AwsEndpoint) -> None:
    run = diagnostic_run_start(requester=Requester.cli("test"), lines=1, duration_seconds=0)
    barrier = threading.Barrier(8)
    outcomes: list[Claim] = []

    def claim(n: int) -> None:
        try:
            barrier.wait()
            outcomes.append(job_claim(task_id=run.task_id, holder=f"w{n}:1"))
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.value for o in outcomes) == ["held"] + ["lost"] * 7
    holder = Job.objects.get(task_id=run.task_id).claimed_by
    job_claim_release(task_id=run.task_id, holder=holder)
    # Released when its task ends: a later redelivery meets the task's own guard.
    assert job_claim(task_id=run.task_id, holder="later:1") is Claim.HELD


@pytest.mark.parametrize(
    "task_name",
    [
        "workers.tasks.diagnostic_run_execute",
        "media_pipeline.tasks.course_cover_variants_build",
        "infra_tasks.rds.tasks.database_action_execute",
        "infra_tasks.rds.tasks.database_scheduled_run",
        "infra_tasks.releases.tasks.release_execute",
        "infra_tasks.terraform.tasks.run_plan_execute",
        "infra_tasks.terraform.tasks.run_apply_execute",
        "infra_tasks.terraform.tasks.run_state_unlock_execute",
    ],
)
def test_every_job_family_claims_its_job_before_running(task_name: str) -> None:
    from workers.celery import app

    app.loader.import_default_modules()
    assert isinstance(app.tasks[task_name], ClaimedTask)


def _under_way(prefix: str, *, duration_seconds: float) -> DiagnosticRun:
    """Start a 40-line diagnostic job on `prefix`'s queues; return it once it is running."""
    with publishing_to(prefix):
        run = diagnostic_run_start(
            requester=Requester.cli("test"), lines=40, duration_seconds=duration_seconds
        )
    wait_until(
        lambda: len(job_log_since(task_id=run.task_id).lines) >= 3,
        message="the job to be under way",
    )
    return run


def _succeeds(run: DiagnosticRun, message: str) -> None:
    wait_until(
        lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
        timeout=90,
        message=message,
    )


def test_a_job_whose_pool_process_was_killed_is_taken_over_and_finished_on_its_worker(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """The kernel's OOM killer takes the pool process mid-job; the worker lives on and hands
    the message straight back. The dead process's lease still runs: the delivery sees its
    holder is gone and runs the job, instead of dropping it as a duplicate."""
    with workers_on_a_queue(aws, worker_env, run_dir, "oom") as (prefix, _, (worker,)):
        run = _under_way(prefix, duration_seconds=8)
        first_start = TaskResult.objects.get(task_id=run.task_id).date_started
        assert first_start is not None
        for pid in worker.pool_pids():
            os.kill(pid, signal.SIGKILL)

        _succeeds(run, "the job to be taken over and succeed")
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.SUCCEEDED and run.attempts == 2
        # It started when the dead process started it: its duration counts from then.
        assert TaskResult.objects.get(task_id=run.task_id).date_started == first_start
        assert f"job {run.task_id}: its process" in worker.log_text()
        assert "duplicate delivery" not in worker.log_text()


def _start_held_elsewhere(prefix: str, worker: WorkerProcess) -> tuple[DiagnosticRun, str]:
    """Start a diagnostic job whose lease a process of another worker holds for 10 s more
    and does not renew (what a pool process killed mid-job on another machine leaves);
    return it and that holder once `worker` has received it and left a recheck. Not less:
    on a loaded machine the job reached the worker 4 s after it was sent, its lease had run
    out, and the worker took it over at once instead of leaving a recheck."""
    holder = "gone-worker@elsewhere:4242"
    with publishing_to(prefix), transaction.atomic():
        run = diagnostic_run_start(requester=Requester.cli("test"), lines=3, duration_seconds=0)
        Job.objects.filter(task_id=run.task_id).update(
            claimed_by=holder, claimed_until=timezone.now() + timedelta(seconds=10)
        )
    wait_until(
        lambda: (
            f"[{run.task_id}]: another delivery holds the job; skipped, and checked "
            "again once its lease has run out" in worker.log_text()
        ),
        message="the delivery to leave a recheck",
    )
    return run, holder


@pytest.mark.waits  # on a lease running out
def test_a_job_whose_process_died_on_another_worker_is_taken_over_once_its_lease_runs_out(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """The message comes back to a worker that cannot see the holder's process: it leaves a
    recheck that SQS holds back until the lease has run out, and the recheck runs the job."""
    with workers_on_a_queue(aws, worker_env, run_dir, "other") as (prefix, _, (worker,)):
        run, _ = _start_held_elsewhere(prefix, worker)
        _succeeds(run, "the recheck to take the job over and finish it")
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.SUCCEEDED and run.attempts == 1
        assert f"job {run.task_id}: its holder stopped renewing its claim; taken over" in (
            worker.log_text()
        )
        job = Job.objects.get(task_id=run.task_id)
        assert job.claimed_by.startswith(f"{worker.name}@") and job.claimed_until is None


@pytest.mark.waits  # on a lease running out
def test_a_recheck_finding_the_lease_renewed_drops_the_duplicate_without_running_it(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """A true duplicate: the holder lives and renews its lease. The recheck finds it renewed
    and is dropped; the job is neither run twice nor touched."""
    sqs = aws.client("sqs")
    with workers_on_a_queue(aws, worker_env, run_dir, "alive") as (prefix, url, (worker,)):
        run, holder = _start_held_elsewhere(prefix, worker)
        # The holder renews its lease, as a live one does every third of a timeout.
        Job.objects.filter(task_id=run.task_id).update(
            claimed_until=timezone.now() + timedelta(seconds=120)
        )
        wait_until(
            lambda: (
                f"recheck of workers.tasks.diagnostic_run_execute [{run.task_id}]: another "
                "delivery holds the job; dropped" in worker.log_text()
            ),
            timeout=60,
            message="the recheck to find the holder alive",
        )
        # Acknowledged, and no recheck of its own left behind.
        wait_until(
            lambda: _count(sqs, url, delayed=True) == 0,
            message="the recheck to be acknowledged",
        )
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.QUEUED and run.attempts == 0
        assert Job.objects.get(task_id=run.task_id).claimed_by == holder


def test_a_recheck_claims_a_lapsed_lease_as_taken_over_and_otherwise_as_any_delivery(
    sqs_queues: AwsEndpoint,
) -> None:
    run = diagnostic_run_start(requester=Requester.cli("test"), lines=1, duration_seconds=0)
    held = Job.objects.filter(task_id=run.task_id)
    held.update(claimed_by="w0:1", claimed_until=timezone.now() + timedelta(seconds=60))
    assert job_claim(task_id=run.task_id, holder="w1:1", recheck=True) is Claim.LOST
    held.update(claimed_until=timezone.now() - timedelta(seconds=1))
    assert job_claim(task_id=run.task_id, holder="w1:1", recheck=True) is Claim.TAKEN_OVER
    # Released when the job ended: the recheck meets the task's own guard, as a late
    # redelivery does.
    job_claim_release(task_id=run.task_id, holder="w1:1")
    assert job_claim(task_id=run.task_id, holder="w2:1", recheck=True) is Claim.HELD


def test_no_schedule_can_mark_its_message_as_a_recheck() -> None:
    assert RECHECK_HEADER in RESERVED_HEADERS


@pytest.mark.waits  # on a lease running out
def test_two_workers_a_job_whose_pool_process_is_killed_finishes_wherever_it_comes_back(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """Two workers on one queue; the process running the job is SIGKILLed. Its worker hands
    the message back and either worker may receive it: on the same worker it is taken over
    at once, on the other after a recheck. Either way the job finishes, run twice at most."""
    workers = workers_on_a_queue(aws, worker_env, run_dir, "k1", "k2", visibility_seconds=20)
    with workers as (prefix, _, both):
        run = _under_way(prefix, duration_seconds=6)
        holder = Job.objects.get(task_id=run.task_id).claimed_by
        os.kill(int(holder.rpartition(":")[2]), signal.SIGKILL)

        _succeeds(run, "the job to come back and succeed")
        run.refresh_from_db()
        assert run.state == DiagnosticRun.State.SUCCEEDED and run.attempts == 2
        assert "taken over" in "".join(worker.log_text() for worker in both)


@pytest.mark.waits  # on the job outliving its claim's lease several times
def test_a_duplicate_delivered_to_the_worker_running_the_job_does_not_run_it_a_second_time(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """SQS shows a running job's message again (after a hang, or extensions it refused) and
    the worker running it receives the copy in a free slot. The copy was dropped as a
    duplicate, but Celery keys the requests it holds by task id and forgot the running one
    with it: the claim was no longer renewed, nor the message extended, and the recheck the
    copy left took the job over and ran it again beside the first."""
    prefix = new_queue_prefix()
    visibility = 6
    aws.client("sqs").create_queue(
        QueueName=f"{prefix}default", Attributes={"VisibilityTimeout": str(visibility)}
    )
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "SQS_VISIBILITY_TIMEOUT_SECONDS": str(visibility),
        },
        queues=["default"],
        log_dir=run_dir,
        concurrency=2,
    )
    try:
        # Five leases (half a visibility timeout each) after the copy.
        run = _under_way(prefix, duration_seconds=4 * visibility)
        with publishing_to(prefix):
            diagnostic_run_execute.apply_async(args=[run.pk], task_id=run.task_id)
        wait_until(
            lambda: (
                f"duplicate delivery of workers.tasks.diagnostic_run_execute [{run.task_id}]"
                in worker.log_text()
            ),
            message="the copy to be dropped as a duplicate",
        )

        _succeeds(run, "the job to succeed")
        run.refresh_from_db()
        assert (run.state, run.attempts, run.error) == (DiagnosticRun.State.SUCCEEDED, 1, "")
        assert "taken over" not in worker.log_text()
    finally:
        worker.stop()


@pytest.mark.waits  # on the job outliving its message's and its claim's first timeouts
def test_a_worker_stopping_mid_job_keeps_the_job_to_itself_until_it_is_done(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    """A warm shutdown (SIGTERM from a deploy, or the worker stopping itself after its
    consumer went silent) stops the consumer before the running job ends. The job's message
    and claim are still renewed until it does, so the other worker never starts it too."""
    workers = workers_on_a_queue(aws, worker_env, run_dir, "w1", "w2", visibility_seconds=6)
    with workers as (prefix, _, both):
        # 16 s: more than two visibility timeouts (and five leases) after the SIGTERM.
        run = _under_way(prefix, duration_seconds=16)
        holder = Job.objects.get(task_id=run.task_id).claimed_by
        stopping = next(w for w in both if holder.startswith(w.hostname))
        other = next(w for w in both if w is not stopping)
        os.kill(stopping.process.pid, signal.SIGTERM)

        _succeeds(run, "the job to finish on the worker that is stopping")
        wait_until(
            lambda: stopping.process.poll() is not None,
            timeout=60,
            message="the stopping worker to exit once its job is done",
        )
        run.refresh_from_db()
        assert (run.state, run.attempts, run.error) == (DiagnosticRun.State.SUCCEEDED, 1, "")
        assert run.task_id not in other.log_text(), "the other worker received the job"
        assert "visibility-extender goes on while the worker finishes 1 job(s)" in (
            stopping.log_text()
        )


@pytest.mark.django_db
def test_an_ended_job_runs_again_only_when_redriven_from_the_dead_letter_queue_after_it_ended() -> (
    None
):
    from datetime import timedelta

    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from workers.claims import _job_ended
    from workers.models import DeadLetterAction

    TaskResult.objects.create(task_id="t-running", status="STARTED")
    assert _job_ended("t-running") is None
    for status in ("SUCCESS", "FAILURE", "REVOKED"):
        TaskResult.objects.create(task_id=f"t-{status}", status=status)
        assert _job_ended(f"t-{status}") == status

    redrive = DeadLetterAction.objects.create(
        kind=DeadLetterAction.Kind.REDRIVE,
        queue="default",
        message_id="m-1",
        task_id="t-FAILURE",
        username="ops",
    )
    # Sent back before the job ended: that delivery already ran, and ended it.
    DeadLetterAction.objects.filter(pk=redrive.pk).update(at=timezone.now() - timedelta(hours=1))
    assert _job_ended("t-FAILURE") == "FAILURE"
    # Sent back after it ended: a person asked for it to run again.
    DeadLetterAction.objects.filter(pk=redrive.pk).update(at=timezone.now() + timedelta(seconds=1))
    assert _job_ended("t-FAILURE") is None
