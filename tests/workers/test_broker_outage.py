"""Workers consume again after an SQS outage (kombu issue 1127), busy or idle.

Real worker processes against their own moto_server, which is killed for 30 seconds and
started again on the same port, as an SQS endpoint outage looks to a worker.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django_celery_results.models import TaskResult

from tests.support.jobs import diagnostic_queued, job_status
from tests.support.servers import (
    AwsEndpoint,
    WorkerProcess,
    aws_environment,
    new_queue_prefix,
    own_queues_create,
    wait_until,
    watchdog_env,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.waits]

OUTAGE_SECONDS = 30
# One worker per queue, so a job on a queue proves that queue's worker consumes.
QUEUES = ("default", "media", "release")


def test_every_worker_consumes_again_within_30s_of_sqs_coming_back(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint
) -> None:
    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix, QUEUES)
    env = {
        **worker_env,
        "AWS_ENDPOINT_URL": endpoint.url,
        "AWS_ENDPOINT_URL_SQS": endpoint.url,
        "SQS_QUEUE_PREFIX": prefix,
    }
    workers = {
        queue: WorkerProcess(env=env, queues=[queue], log_dir=run_dir, name=f"outage-{queue}")
        for queue in QUEUES
    }
    try:
        # The default queue's worker is busy through the outage; the other two are idle.
        busy = diagnostic_queued(
            prefix,
            queue="default",
            duration_seconds=OUTAGE_SECONDS + 10,
            endpoint_url=endpoint.url,
        )
        wait_until(lambda: job_status(busy.task_id) == "STARTED", timeout=30, message="busy job")

        endpoint.halt()
        time.sleep(OUTAGE_SECONDS)
        endpoint.start()
        own_queues_create(endpoint, prefix, QUEUES)

        runs = {
            queue: diagnostic_queued(
                prefix, queue=queue, duration_seconds=0.1, endpoint_url=endpoint.url
            )
            for queue in QUEUES
        }
        for queue, run in runs.items():
            task_id = run.task_id
            wait_until(
                lambda: job_status(task_id) == "SUCCESS",  # noqa: B023 (called at once)
                timeout=30,
                message=f"the {queue} worker to consume a job after the outage",
            )
        for queue, run in runs.items():
            result = TaskResult.objects.get(task_id=run.task_id)
            assert result.worker == workers[queue].hostname
    finally:
        for worker in workers.values():
            worker.stop()


def watched_worker(
    worker_env: dict[str, str],
    endpoint: AwsEndpoint,
    run_dir: Path,
    liveness_file: Path,
    exit_seconds: int,
    *,
    concurrency: int = 1,
) -> tuple[WorkerProcess, str]:
    """A worker on queues of its own at `endpoint`, beating every half second, its watchdog
    stopping it after `exit_seconds` of silence and dating `liveness_file`; and the prefix."""
    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix, QUEUES)
    worker = WorkerProcess(
        env={
            **worker_env,
            "AWS_ENDPOINT_URL": endpoint.url,
            "AWS_ENDPOINT_URL_SQS": endpoint.url,
            "SQS_QUEUE_PREFIX": prefix,
            **watchdog_env(liveness_file, exit_seconds),
        },
        queues=["default"],
        concurrency=concurrency,
        log_dir=run_dir,
    )
    return worker, prefix


def test_a_worker_whose_consumer_stays_silent_exits_non_zero_and_its_liveness_goes_stale(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    from workers.heartbeats import EXIT_CONSUMER_STALLED
    from workers.liveness import consumer_alive

    liveness_file = tmp_path / "consuming"
    worker, _ = watched_worker(worker_env, endpoint, run_dir, liveness_file, 5)
    try:
        wait_until(worker.has_received, timeout=30, message="the consumer to receive")
        wait_until(lambda: consumer_alive(str(liveness_file), 5), message="liveness file")

        endpoint.halt()
        wait_until(
            lambda: worker.process.poll() is not None,
            timeout=60,
            message="the worker to stop once its consumer stayed silent",
        )
        assert worker.process.returncode == EXIT_CONSUMER_STALLED
        assert "worker consumer silent for" in worker.log_text()
        # Touched last while the consumer still counted as alive: it goes stale from there.
        wait_until(
            lambda: not consumer_alive(str(liveness_file), 5), timeout=15, message="stale file"
        )
    finally:
        worker.stop()


def test_a_worker_running_a_job_through_an_sqs_outage_stays_healthy_until_the_job_ends(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    """Its consumer polls on and SQS refuses: a fresh worker would meet the same outage. The
    health check failed and the worker stopped itself mid-job, and ECS, which kills what is
    still running after its stop timeout (120 s at most on Fargate), took a running
    terraform apply along with it, holding the state lock. Once the job has ended, an
    outage that goes on stops the worker as before."""
    from workers.heartbeats import EXIT_CONSUMER_STALLED
    from workers.liveness import consumer_alive

    exit_seconds = 5
    liveness_file = tmp_path / "consuming"
    # A free slot: the consumer goes on polling while the job runs, as an infra worker's
    # does (concurrency 4).
    worker, prefix = watched_worker(
        worker_env, endpoint, run_dir, liveness_file, exit_seconds, concurrency=2
    )
    try:
        busy = diagnostic_queued(
            prefix, queue="default", duration_seconds=4 * exit_seconds, endpoint_url=endpoint.url
        )
        wait_until(lambda: job_status(busy.task_id) == "STARTED", timeout=30, message="busy job")

        endpoint.halt()
        halted = time.monotonic()
        while job_status(busy.task_id) == "STARTED":
            assert worker.process.poll() is None, "the worker stopped mid-job"
            assert consumer_alive(str(liveness_file), exit_seconds), (
                f"the health check failed mid-job, {time.monotonic() - halted:.0f}s into the outage"
            )
            time.sleep(0.5)
        assert time.monotonic() - halted > 2 * exit_seconds
        assert job_status(busy.task_id) == "SUCCESS"
        assert "SQS unreachable" in worker.log_text()

        wait_until(
            lambda: worker.process.poll() is not None,
            timeout=60,
            message="the worker to stop once its job ended and SQS stayed down",
        )
        assert worker.process.returncode == EXIT_CONSUMER_STALLED
    finally:
        worker.stop()


def test_an_sqs_that_hangs_is_asked_once_and_refusals_then_come_at_once(
    sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An endpoint that accepts connections and never answers (a frozen process, a
    black-holed route): one probe waits out its timeout; the requests after it, for the
    next HEALTH_TTL_SECONDS, are refused without asking again."""
    import socket
    import threading

    from tests.support.broker import drop_broker_connections
    from workers.enqueue import BrokerUnavailable
    from workers.outbox import broker_health

    server = socket.create_server(("127.0.0.1", 0))
    connections: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connections.append(connection)  # held open, never answered

    threading.Thread(target=accept, daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{server.getsockname()[1]}")
    drop_broker_connections()
    try:
        with pytest.raises(BrokerUnavailable, match="unreachable"):
            broker_health.ensure_available()  # the probe waits out its read timeout
        asked = len(connections)
        assert asked
        for _ in range(2):
            with pytest.raises(BrokerUnavailable, match="unreachable"):
                broker_health.ensure_available()
        assert len(connections) == asked  # refused from what the probe learnt
    finally:
        server.close()
        for connection in connections:
            connection.close()
        monkeypatch.undo()
        drop_broker_connections()


def _liveness_check_passes(liveness_file: Path, exit_seconds: int) -> bool:
    """The container health check, run as ECS runs it."""
    import os
    import subprocess
    import sys

    from workers.devstack import BASE_DIR

    return (
        subprocess.run(
            [sys.executable, "-m", "workers.liveness"],
            cwd=BASE_DIR,
            env={
                **os.environ,
                "WORKER_LIVENESS_FILE": str(liveness_file),
                "WORKER_CONSUMER_EXIT_SECONDS": str(exit_seconds),
            },
            capture_output=True,
            check=False,
        ).returncode
        == 0
    )


def test_the_health_check_fails_once_the_consumer_is_silent_for_the_limit_not_twice_that(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint, tmp_path: Path
) -> None:
    """A worker whose SQS hangs (its endpoint frozen): the consumer is stuck, the heartbeat
    thread beats on. The health check must count the consumer's silence, not the beats."""
    from workers.models import WorkerHeartbeat

    exit_seconds = 8
    liveness_file = tmp_path / "consuming"
    worker, _ = watched_worker(worker_env, endpoint, run_dir, liveness_file, exit_seconds)
    try:
        wait_until(worker.has_received, message="the worker to receive")
        wait_until(
            lambda: _liveness_check_passes(liveness_file, exit_seconds), message="healthy worker"
        )
        endpoint.freeze()
        wait_until(
            lambda: not _liveness_check_passes(liveness_file, exit_seconds),
            timeout=40,
            message="the health check to fail",
        )
        failed_at = time.time()
        last_receive = WorkerHeartbeat.objects.get(hostname=worker.hostname).last_receive_at
        assert last_receive is not None
        silent = failed_at - last_receive.timestamp()
        # The file used to be touched until the watchdog's limit and go stale only as long
        # again after it: silent for 2 x exit_seconds before the check failed.
        assert exit_seconds <= silent < exit_seconds + 3, silent
    finally:
        endpoint.thaw()
        worker.stop()


def test_a_job_page_says_no_worker_takes_its_queue_while_the_only_worker_is_stalled(
    worker: WorkerProcess,
    worker_env: dict[str, str],
    run_dir: Path,
    endpoint: AwsEndpoint,
    sqs_queues: AwsEndpoint,
    settings: object,
    client: object,
) -> None:
    """A worker whose heartbeat beats on but whose SQS hangs consumes nothing: a job waiting
    on its queue says so, and stops saying so once the worker receives again. The shared
    worker, which reads every queue's name, is frozen meanwhile."""
    import os
    import signal

    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.utils import timezone

    from workers.models import Job, WorkerHeartbeat

    assert isinstance(client, Client)
    settings.WORKER_HEARTBEAT_SECONDS = 0.5  # type: ignore[attr-defined]
    settings.WORKER_CONSUMER_STALLED_SECONDS = 3  # type: ignore[attr-defined]
    client.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw"))
    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix)
    os.killpg(worker.process.pid, signal.SIGSTOP)
    stalled = WorkerProcess(
        env={
            **worker_env,
            "AWS_ENDPOINT_URL": endpoint.url,
            "AWS_ENDPOINT_URL_SQS": endpoint.url,
            "SQS_QUEUE_PREFIX": prefix,
            "WORKER_HEARTBEAT_SECONDS": "0.5",
        },
        queues=["default"],
        log_dir=run_dir,
        name="stalls",
    )
    try:
        wait_until(stalled.has_received, message="the worker to receive")
        # The job waits in a queue of its own on the session's SQS: what matters to its
        # page is that no worker consumes the default queue, wherever the message is.
        other = new_queue_prefix()
        own_queues_create(sqs_queues, other)
        run = diagnostic_queued(other, queue="default", duration_seconds=0.1)
        wait_until(
            lambda: Job.objects.filter(task_id=run.task_id, sent_at__isnull=False).exists(),
            message="the job to be sent",
        )

        def warning() -> bool:
            answer = client.get(f"/ops/jobs/{run.task_id}/log/").json()
            return 'id="job-no-consumer"' in answer["summary_html"]

        assert not warning(), "the worker consumes: nothing to warn about"
        endpoint.freeze()
        wait_until(warning, timeout=20, message="the page to say no worker consumes")
        page = client.get(f"/ops/jobs/{run.task_id}/", follow=True).content.decode()
        assert "No worker is taking jobs from the default queue now" in page
        # Its process beats on: only its consumer is silent.
        beat = WorkerHeartbeat.objects.get(hostname=stalled.hostname).last_seen_at
        assert (timezone.now() - beat).total_seconds() < 1.5
        endpoint.thaw()
        wait_until(lambda: not warning(), timeout=20, message="the warning to go")
    finally:
        endpoint.thaw()
        stalled.stop()
        os.killpg(worker.process.pid, signal.SIGCONT)


def test_a_worker_whose_poll_went_silent_consumes_again_once_the_receive_times_out(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint
) -> None:
    # The worker reaches SQS through a proxy that then black-holes every connection open at
    # that moment, for good (what a NAT or load balancer that dropped them leaves): the poll
    # in flight or the next one on the kept connection is never answered. kombu's HTTP
    # client ignored its 20 s timeout, so that queue was never polled again until the
    # watchdog stopped the whole worker (180 s); the worker itself looked alive.
    from tests.support.database import FreezableProxy
    from workers.sqs_transport import RECEIVE_TIMEOUT_MARGIN_SECONDS

    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix, ["default"])
    proxy = FreezableProxy("127.0.0.1", endpoint.port)
    worker = WorkerProcess(
        env={
            **worker_env,
            "AWS_ENDPOINT_URL": endpoint.url,
            "AWS_ENDPOINT_URL_SQS": f"http://127.0.0.1:{proxy.port}",
            "SQS_QUEUE_PREFIX": prefix,
            # Long polls of an empty queue: there is nearly always one in flight.
            "SQS_WAIT_TIME_SECONDS": "5",
        },
        queues=["default"],
        log_dir=run_dir,
    )
    try:
        first = diagnostic_queued(
            prefix, queue="default", duration_seconds=0.1, endpoint_url=endpoint.url
        )
        wait_until(lambda: job_status(first.task_id) == "SUCCESS", message="the first job")

        time.sleep(1)  # the queue is empty again: the worker long-polls it
        proxy.silence()
        # The long poll in flight ends empty at SQS (its answer swallowed) before the job is
        # sent: had it taken the job, SQS would show it again only after its visibility
        # timeout, however soon the worker polled again.
        time.sleep(5 + 2)
        run = diagnostic_queued(
            prefix, queue="default", duration_seconds=0.1, endpoint_url=endpoint.url
        )
        # The receive's timeout (kombu's 20 s, more than the long poll and its margin), then
        # a poll on a fresh connection.
        wait_until(
            lambda: job_status(run.task_id) == "SUCCESS",
            timeout=max(20, 5 + RECEIVE_TIMEOUT_MARGIN_SECONDS) + 20,
            message="the worker to consume again after its silent poll timed out",
        )
        assert worker.process.poll() is None  # the same worker, not a fresh one
        assert "SQS poll of default failed" in worker.log_text()
    finally:
        worker.stop()
        proxy.close()


def test_a_worker_whose_queue_was_deleted_is_shown_not_consuming_that_queue_until_it_is_back(
    worker_env: dict[str, str], run_dir: Path, endpoint: AwsEndpoint, settings: object
) -> None:
    """An SQS endpoint restarted empty, or a queue deleted by hand: the worker's polls of
    that queue fail while those of its others work. It was shown online and consuming
    everything (one last-receive time for the whole process), and jobs waited on the dead
    queue without a word; its log said "works again" and "failed" in turn every second."""
    from django.utils import timezone

    from workers.models import WorkerHeartbeat
    from workers.operations import WorkerRow, worker_rows

    settings.WORKER_CONSUMER_STALLED_SECONDS = 3  # type: ignore[attr-defined]
    prefix = new_queue_prefix()
    own_queues_create(endpoint, prefix, ["default", "media"])
    worker = WorkerProcess(
        env={
            **worker_env,
            **aws_environment(endpoint.url, prefix),
            "WORKER_HEARTBEAT_SECONDS": "0.5",
        },
        queues=["default", "media"],
        log_dir=run_dir,
        name="loses-a-queue",
    )

    def row() -> WorkerRow:
        rows = worker_rows(now=timezone.now())
        return next(r for r in rows if r.heartbeat.hostname == worker.hostname)

    try:
        wait_until(
            lambda: WorkerHeartbeat.objects.filter(
                hostname=worker.hostname, queue_receives__has_keys=["default", "media"]
            ).exists(),
            message="the worker to receive from both queues",
        )
        sqs = endpoint.client("sqs")
        sqs.delete_queue(QueueUrl=sqs.get_queue_url(QueueName=f"{prefix}media")["QueueUrl"])

        wait_until(
            lambda: row().stalled_queues == ("media",),
            timeout=30,
            message="the worker to be shown not receiving from media",
        )
        stalled = row()
        assert stalled.consuming and stalled.consuming_queues == ["default"]

        own_queues_create(endpoint, prefix, ["media"])
        wait_until(
            lambda: row().stalled_queues == (),
            timeout=30,
            message="the worker to receive from media again",
        )
        log = worker.log_text()
        assert log.count("SQS poll of media failed") == 1
        assert "SQS poll of default works again" not in log
        assert "SQS poll of media works again" in log
    finally:
        worker.stop()
