"""Flower and `celery inspect` over the monitoring channel, with tasks on SQS.

Real components only: moto_server for SQS, a private redis-server for the channel, real
worker processes and a real Flower process read through its HTTP API with basic auth.
Each test group uses its own SQS queue names, so the session's shared worker (which has no
monitoring channel) never takes these tasks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import partial
from pathlib import Path

import boto3
import pytest
from django.conf import settings
from django.test import override_settings
from kombu import Consumer

from tests.support.broker import publishing_to
from tests.support.jobs import job_status
from tests.support.monitoring import (
    MONITORED_QUEUES,
    FlowerProcess,
    Monitored,
    RedisServer,
    sqs_queues_named,
)
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, wait_until
from workers.broker import sqs_queue_name
from workers.devstack import BASE_DIR, free_port
from workers.enqueue import Requester
from workers.flower import (
    ACT_REFUSED,
    AUDITED_ACTIONS,
    LIVE_API_READS,
    LOOK_REFUSED,
    NO_AUTH,
    NO_CHANNEL,
    START_REFUSED,
    STARTS,
    LaunchRefused,
    channel_api_reads,
    flower_argv,
    uses_own_logins,
)
from workers.models import DiagnosticRun, FlowerAction, WorkerHeartbeat
from workers.monitoring import MAX_BUFFERED_EVENTS, ChannelEventDispatcher, monitor_connection
from workers.queue_depths import queue_depths_record
from workers.selectors import job_log_since
from workers.services import diagnostic_run_start

QUEUES = MONITORED_QUEUES


def diagnostic(prefix: str, **kwargs: object) -> DiagnosticRun:
    with publishing_to(prefix):
        return diagnostic_run_start(requester=Requester.cli("monitoring-test"), **kwargs)  # type: ignore[arg-type]


def inspect_ping(monitor_url: str, hostname: str) -> subprocess.CompletedProcess[str]:
    """The operator's command: `celery inspect ping` with the channel as its broker."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            f"--broker={monitor_url}",
            "inspect",
            "ping",
            "--timeout=5",
            f"--destination={hostname}",
        ],
        cwd=BASE_DIR,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@contextmanager
def worker_on_its_channel(
    worker_env: dict[str, str], run_dir: Path
) -> Iterator[tuple[str, RedisServer, WorkerProcess]]:
    """For a test that takes the channel down: a private monitoring channel and a worker on
    SQS queues of its own (their prefix), both stopped afterwards."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    redis = RedisServer(run_dir)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix, "CELERY_MONITOR_URL": redis.url},
        queues=["default"],
        log_dir=run_dir,
    )
    try:
        yield prefix, redis, worker
    finally:
        worker.stop()
        redis.stop()


@contextmanager
def flower_on_its_channel(
    worker_env: dict[str, str], run_dir: Path
) -> Iterator[tuple[str, RedisServer, WorkerProcess, FlowerProcess]]:
    """`worker_on_its_channel`, and Flower on that channel."""
    with worker_on_its_channel(worker_env, run_dir) as (prefix, redis, worker):
        flower = FlowerProcess(env={**worker_env, "CELERY_MONITOR_URL": redis.url}, log_dir=run_dir)
        try:
            yield prefix, redis, worker, flower
        finally:
            flower.stop()


def channel_down(redis: RedisServer, flower: FlowerProcess) -> None:
    """Stop the channel and wait until Flower says so."""
    redis.stop()
    wait_until(
        lambda: "monitoring-channel-down" in flower.get("/"),
        timeout=30,
        message="Flower to say the channel is down",
    )


@pytest.mark.django_db(transaction=True)
def test_flower_lists_the_worker_with_its_queues_and_the_tasks_it_ran(
    monitored: Monitored, flower: FlowerProcess
) -> None:
    hostname = monitored.worker.hostname

    def worker_in_flower() -> dict | None:
        return flower.get("/api/workers?refresh=1").get(hostname)

    info = wait_until(worker_in_flower, timeout=60, message="Flower to list the worker")
    assert isinstance(info, dict)
    assert sorted(q["name"] for q in info["active_queues"]) == sorted(QUEUES)
    assert info["stats"]["pool"]["max-concurrency"] == 1
    # The worker's configuration as Flower shows it: Celery's settings only, no secrets.
    assert info["conf"]["CELERY_TASK_ACKS_LATE"] is True
    assert not {"SECRET_KEY", "DATABASES", "CELERY_MONITOR_URL"} & set(info["conf"])

    ok = diagnostic(monitored.prefix, lines=3, duration_seconds=0.2)
    failing = diagnostic(monitored.prefix, lines=2, duration_seconds=0.1, fail=True)

    def states_in_flower() -> dict[str, str]:
        tasks = flower.get("/api/tasks")
        return {
            task_id: tasks[task_id]["state"]
            for task_id in (ok.task_id, failing.task_id)
            if task_id in tasks
        }

    wait_until(
        lambda: states_in_flower() == {ok.task_id: "SUCCESS", failing.task_id: "FAILURE"},
        timeout=60,
        message="Flower to see both tasks finish",
    )
    task = flower.get(f"/api/task/info/{ok.task_id}")
    assert task["worker"] == hostname
    assert task["name"] == "workers.tasks.diagnostic_run_execute"


@pytest.mark.django_db(transaction=True)
def test_flower_shows_a_django_task_under_its_module_path_like_any_job(
    monitored: Monitored, flower: FlowerProcess
) -> None:
    from tests.workers.tasks_app.tasks import add
    from workers.requesters import requester_scope

    with publishing_to(monitored.prefix), requester_scope(Requester.cli("monitoring-test")):
        result = add.enqueue(20, 22)

    wait_until(
        lambda: flower.get("/api/tasks").get(result.id, {}).get("state") == "SUCCESS",
        timeout=60,
        message="Flower to see the Django task succeed",
    )
    task = flower.get(f"/api/task/info/{result.id}")
    assert task["name"] == "tests.workers.tasks_app.tasks.add"
    assert task["worker"] == monitored.worker.hostname
    result.refresh()
    assert result.return_value == 42


@pytest.mark.django_db(transaction=True)
def test_flower_shows_a_job_that_ended_by_its_outcome_as_failed_not_started(
    monitored: Monitored, flower: FlowerProcess
) -> None:
    """A refused upload ends its job through workers.outcomes: FAILURE stored by hand, then
    Celery's Ignore, after which Celery sends no event. Flower showed such a job as STARTED,
    with a Terminate button, for good; it now reads FAILURE with the refusal, as the admin."""
    from courses.models import Course
    from courses.services.covers import course_cover_set
    from tests.courses.conftest import make_course, upload

    course = make_course("flower-refused")
    # A JPEG's signature, then no picture: refused by the worker, not by the form.
    broken = upload(b"\xff\xd8\xff\xe0" + b"this is not a photo\n" * 50, "holiday.jpg")
    with publishing_to(monitored.prefix):
        course_cover_set(
            course_id=course.pk, upload=broken, requester=Requester.cli("monitoring-test")
        )
    task_id = Course.objects.get(pk=course.pk).cover_task_id

    wait_until(
        lambda: job_status(task_id) == "FAILURE", timeout=60, message="the job to end FAILURE"
    )
    wait_until(
        lambda: flower.get("/api/tasks").get(task_id, {}).get("state") == "FAILURE",
        timeout=30,
        message="Flower to see the job fail",
    )
    task = flower.get(f"/api/task/info/{task_id}")
    assert task["worker"] == monitored.worker.hostname
    assert "CorruptImage" in task["exception"] and "truncated or corrupt" in task["exception"]
    assert task_id not in flower.get("/api/tasks?state=STARTED")


def test_flower_api_refuses_requests_without_the_login(flower: FlowerProcess) -> None:
    status, _ = flower.request("/api/workers", auth=False)
    assert status == 401


def test_flower_metrics_need_the_login_too(flower: FlowerProcess) -> None:
    def metrics(auth: bool) -> tuple[int, str]:
        request = urllib.request.Request(f"{flower.url}/metrics")
        if auth:
            token = b64encode(f"{flower.user}:{flower.password}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")

    status, body = metrics(auth=False)
    assert status == 401 and "flower_" not in body
    status, body = metrics(auth=True)
    assert status == 200 and "flower_" in body


def test_celery_inspect_ping_gets_the_workers_reply_through_the_channel(
    monitored: Monitored,
) -> None:
    result = inspect_ping(monitored.redis.url, monitored.worker.hostname)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{monitored.worker.hostname}: OK" in result.stdout
    assert "pong" in result.stdout


@pytest.mark.django_db(transaction=True)
def test_task_revoked_in_flower_while_queued_never_runs(
    monitored: Monitored, flower: FlowerProcess
) -> None:
    # The worker's one process is busy, so the second job waits on SQS.
    blocker = diagnostic(monitored.prefix, lines=20, duration_seconds=4)
    wait_until(lambda: job_status(blocker.task_id) == "STARTED", timeout=60, message="blocker")
    queued = diagnostic(monitored.prefix, lines=3, duration_seconds=0.1)
    assert job_status(queued.task_id) == "PENDING"

    flower.post(f"/api/task/revoke/{queued.task_id}")

    wait_until(lambda: job_status(blocker.task_id) == "SUCCESS", timeout=60, message="blocker")
    wait_until(
        lambda: job_status(queued.task_id) == "REVOKED",
        timeout=60,
        message="the worker to receive the revoked task and drop it",
    )
    # Its record ends too (just after REVOKED is stored), saying why, instead of reading
    # Queued for good.
    wait_until(
        lambda: DiagnosticRun.objects.get(pk=queued.pk).state == DiagnosticRun.State.FAILED,
        timeout=30,
        message="the revoked job's record to end",
    )
    queued.refresh_from_db()
    assert queued.attempts == 0
    assert queued.error == "revoked before it started"
    assert job_log_since(task_id=queued.task_id).lines == []
    # Who revoked it, from Flower, and when: the audit.
    action = FlowerAction.objects.get(target=queued.task_id)
    assert (action.action, action.username, action.status) == ("task revoke", flower.user, 200)
    assert action.remote_addr == "127.0.0.1" and action.at is not None


@pytest.mark.django_db(transaction=True)
def test_running_task_terminated_from_flower_stops_and_is_not_run_again(
    monitored: Monitored, flower: FlowerProcess
) -> None:
    run = diagnostic(monitored.prefix, lines=300, duration_seconds=30)
    wait_until(
        lambda: len(job_log_since(task_id=run.task_id).lines) >= 3,
        timeout=60,
        message="the task to be running",
    )
    flower.post(f"/api/task/revoke/{run.task_id}?terminate=true")
    wait_until(lambda: job_status(run.task_id) == "REVOKED", timeout=60, message="REVOKED")

    # The worker goes on with other work, and the terminated job never completes.
    after = diagnostic(monitored.prefix, lines=2, duration_seconds=0.1)
    wait_until(lambda: job_status(after.task_id) == "SUCCESS", timeout=60, message="next job")
    assert job_status(run.task_id) == "REVOKED"
    action = FlowerAction.objects.get(target=run.task_id)
    assert (action.action, action.arguments, action.username) == (
        "task revoke",
        "terminate=true",
        flower.user,
    )
    lines = job_log_since(task_id=run.task_id).lines
    assert not any(line.startswith("done:") for line in lines)
    assert len(lines) < 300
    # Its record does not read Running for good: it ended with the job, saying why.
    wait_until(
        lambda: DiagnosticRun.objects.get(pk=run.pk).state == DiagnosticRun.State.FAILED,
        timeout=30,
        message="the terminated job's record to end",
    )
    run.refresh_from_db()
    assert run.error.startswith("terminated while running (revoked with signal")


@pytest.mark.django_db(transaction=True)
def test_pool_grows_and_shrinks_from_flower(monitored: Monitored, flower: FlowerProcess) -> None:
    hostname = monitored.worker.hostname

    def pool_size() -> int:
        stats = flower.get(f"/api/workers?refresh=1&workername={hostname}")[hostname]["stats"]
        return len(stats["pool"]["processes"])

    wait_until(lambda: pool_size() == 1, timeout=60, message="one pool process")
    flower.post(f"/api/worker/pool/grow/{hostname}?n=1")
    wait_until(lambda: pool_size() == 2, timeout=60, message="the pool to grow")
    # The heartbeat row the operations page reads follows the pool too.
    wait_until(
        lambda: WorkerHeartbeat.objects.filter(hostname=hostname, concurrency=2).exists(),
        timeout=30,
        message="the heartbeat to report two processes",
    )
    flower.post(f"/api/worker/pool/shrink/{hostname}?n=1")
    wait_until(lambda: pool_size() == 1, timeout=60, message="the pool to shrink")
    assert list(
        FlowerAction.objects.filter(target=hostname)
        .order_by("at")
        .values_list("action", "arguments", "username", "status")
    ) == [
        ("worker pool grow", "n=1", flower.user, 200),
        ("worker pool shrink", "n=1", flower.user, 200),
    ]


@pytest.mark.django_db(transaction=True)
def test_flower_refuses_to_start_tasks_and_records_the_attempt(flower: FlowerProcess) -> None:
    """Flower's apply and send-task API would publish where no worker reads, unrecorded."""
    task = "workers.tasks.diagnostic_run_execute"
    for path in ("apply", "async-apply", "send-task"):
        status, body = flower.request(f"/api/task/{path}/{task}", method="POST")
        assert status == 403 and START_REFUSED in body, (path, status, body)
    assert sorted(
        FlowerAction.objects.filter(target=task).values_list("action", "status", "username")
    ) == [
        ("task apply", 403, flower.user),
        ("task async apply", 403, flower.user),
        ("task send", 403, flower.user),
    ]


@pytest.mark.django_db(transaction=True)
def test_flower_actions_without_the_login_are_refused_and_not_recorded(
    flower: FlowerProcess,
) -> None:
    status, _ = flower.request("/api/task/revoke/some-task", method="POST", auth=False)
    assert status == 401
    status, _ = flower.request("/api/task/send-task/some-task", method="POST", auth=False)
    assert status == 401
    assert not FlowerAction.objects.filter(target="some-task").exists()


def test_every_flower_handler_that_acts_is_audited_or_refused() -> None:
    """A Flower upgrade that adds a POST handler to its API fails here until it is listed."""
    import importlib
    import inspect as inspect_module

    acting = set()
    for module_name in ("flower.api.control", "flower.api.tasks", "flower.api.workers"):
        module = importlib.import_module(module_name)
        for name, handler in inspect_module.getmembers(module, inspect_module.isclass):
            if handler.__module__ == module_name and "post" in vars(handler):
                acting.add((module_name, name))
    assert acting == set(AUDITED_ACTIONS) | set(STARTS)


@pytest.mark.django_db(transaction=True)
def test_channel_down_tasks_keep_flowing_and_worker_reconnects_when_it_returns(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    with worker_on_its_channel(worker_env, run_dir) as (prefix, redis, worker):
        wait_until(
            lambda: "monitoring channel: listening for remote control" in worker.log_text(),
            timeout=30,
            message="the worker to listen on the channel",
        )
        redis.stop()

        # With the channel gone, jobs still go through SQS, one after the other.
        runs = [diagnostic(prefix, lines=2, duration_seconds=0.1) for _ in range(3)]
        wait_until(
            lambda: all(job_status(r.task_id) == "SUCCESS" for r in runs),
            timeout=60,
            message="the jobs",
        )
        log = worker.log_text()
        assert "monitoring channel: cannot publish events" in log
        assert "unreachable" in log and "remote control paused, reconnecting" in log

        redis.start()
        wait_until(
            lambda: "monitoring channel: reconnected, remote control" in worker.log_text(),
            timeout=60,
            message="the worker to reconnect to the channel",
        )
        result = inspect_ping(redis.url, worker.hostname)
        assert "pong" in result.stdout, result.stdout + result.stderr
        run = diagnostic(prefix, lines=2, duration_seconds=0.1)
        wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=60, message="job")
        wait_until(
            lambda: "monitoring channel: publishing events again" in worker.log_text(),
            timeout=60,
            message="events to flow again",
        )
        assert worker.process.poll() is None


@pytest.mark.django_db(transaction=True)
def test_with_the_channel_down_every_flower_page_says_so_and_none_fails(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    with flower_on_its_channel(worker_env, run_dir) as (prefix, redis, worker, flower):
        run = diagnostic(prefix, lines=2, duration_seconds=0.1)
        wait_until(
            lambda: run.task_id in (flower.request("/api/tasks")[1] or {}),
            timeout=60,
            message="Flower to see the job",
        )
        pages = [
            "/",
            "/workers",
            "/tasks",
            f"/task/{run.task_id}",
            f"/worker/{worker.hostname}",
            "/broker",
        ]
        for page in pages:
            assert "monitoring-channel-down" not in flower.get(page), page

        channel_down(redis, flower)
        for page in pages:
            status, body = flower.request(page)
            assert status == 200, (page, status, body)
            assert "The monitoring channel (redis://127.0.0.1:" in body, page
            assert "is unreachable from Flower" in body and "not live" in body, page
        # Flower's queue lengths ask the channel itself: it said 500 with a traceback.
        status, body = flower.request("/api/queues/length")
        assert status == 503, (status, body)
        assert "is unreachable from Flower" in body
        assert "Traceback" not in flower.log_path.read_text()

        redis.start()
        wait_until(
            lambda: "monitoring-channel-down" not in flower.get("/"),
            timeout=30,
            message="the warning to go once the channel is back",
        )


@pytest.mark.django_db(transaction=True)
def test_with_the_channel_down_flowers_api_answers_503_naming_the_channel_not_stale_data(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    with flower_on_its_channel(worker_env, run_dir) as (prefix, redis, worker, flower):
        run = diagnostic(prefix, lines=2, duration_seconds=0.1)
        wait_until(
            lambda: (
                (flower.request("/api/tasks")[1] or {}).get(run.task_id, {}).get("state")
                == "SUCCESS"
            ),
            timeout=60,
            message="Flower to see the job succeed",
        )
        reads = [
            "/api/workers",
            "/api/workers?refresh=1",
            "/api/tasks",
            f"/api/task/info/{run.task_id}",
            "/api/task/types",
            "/api/queues/length",
            "/metrics",  # Prometheus: counters frozen at the outage read as a quiet system
        ]
        assert 'task="workers.tasks.diagnostic_run_execute"' in flower.request("/metrics")[1]
        assert worker.hostname in flower.get("/api/workers?refresh=1")
        assert worker.hostname in flower.get("/api/workers")
        assert flower.get(f"/api/task/info/{run.task_id}")["state"] == "SUCCESS"

        channel_down(redis, flower)
        for path in reads:
            # It answered 200 with what it last saw, as if live.
            status, body = flower.request(path)
            assert status == 503, (path, status, body)
            error = json.loads(body)
            assert "is unreachable from Flower" in error["error"], path
            channel = error["monitoring_channel"]
            assert channel["url"] == redis.url and channel["reachable"] is False, path
            assert channel["live"] is False, path
            # Without the login it is refused as before, and learns nothing of the channel.
            status, body = flower.request(path, auth=False)
            assert status == 401 and "monitoring" not in body, (path, status, body)
        # A task's result is read from the database, live whether the channel answers or not.
        assert flower.get(f"/api/task/result/{run.task_id}")["state"] == "SUCCESS"
        # The dashboard's own tables keep their data (a 503 would empty them under the
        # banner) and carry the marker.
        workers_table = flower.get("/workers?json=1")
        assert [w["hostname"] for w in workers_table["data"]] == [worker.hostname]
        assert workers_table["monitoring_channel"]["live"] is False
        tasks_table = flower.get(
            "/tasks/datatable?draw=1&start=0&length=10&order[0][column]=0&order[0][dir]=desc"
        )
        assert run.task_id in [t["uuid"] for t in tasks_table["data"]]
        assert tasks_table["monitoring_channel"]["live"] is False

        redis.start()
        wait_until(
            lambda: flower.request("/api/workers")[0] == 200,
            timeout=30,
            message="the API to answer again once the channel is back",
        )
        assert "monitoring_channel" not in flower.get("/workers?json=1")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_with_the_channel_down_flowers_pages_keep_their_tables_and_refresh_says_why_it_failed(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint, chromium: object
) -> None:
    """Flower's dashboard under the outage, as a person uses it: the workers table still
    fills (its feed is marked, not refused), and a worker's Refresh says the channel is
    down, in words, instead of reporting a refresh that reached nobody."""
    from playwright.sync_api import expect

    with flower_on_its_channel(worker_env, run_dir) as (_, redis, worker, flower):
        context = chromium.new_context(  # type: ignore[attr-defined]
            http_credentials={"username": flower.user, "password": flower.password}
        )
        try:
            wait_until(
                lambda: worker.hostname in (flower.request("/api/workers?refresh=1")[1] or {}),
                timeout=60,
                message="Flower to know the worker",
            )
            channel_down(redis, flower)
            page = context.new_page()
            page.goto(f"{flower.url}/workers")
            expect(page.locator("#monitoring-channel-down")).to_contain_text("not live")
            expect(page.get_by_role("link", name=worker.hostname)).to_be_visible()

            page.goto(f"{flower.url}/worker/{urllib.parse.quote(worker.hostname)}")
            page.get_by_role("button", name="Actions").click()
            page.get_by_role("button", name="Refresh", exact=True).click()
            # The toast, not the page's banner (an alert too).
            toast = page.locator(".toast[role=alert]")
            expect(toast).to_contain_text("is unreachable from Flower")
            expect(toast).not_to_contain_text("{")  # words, not a JSON document
            expect(page.get_by_role("status").filter(has_text="refreshed")).to_have_count(0)
        finally:
            context.close()


def test_every_flower_api_read_answers_from_the_channel_or_is_named_live() -> None:
    from flower.api import tasks, workers

    reads = set(channel_api_reads())
    assert {
        workers.ListWorkers,
        tasks.ListTasks,
        tasks.ListTaskTypes,
        tasks.TaskInfo,
        tasks.GetQueueLengths,
    } <= reads
    assert tasks.TaskResult not in reads
    assert {(h.__module__, h.__name__) for h in reads}.isdisjoint(LIVE_API_READS)


@pytest.mark.django_db(transaction=True)
def test_flowers_broker_page_shows_the_sqs_job_queues_and_their_depths_not_the_channels(
    monitored: Monitored, worker_env: dict[str, str], run_dir: Path
) -> None:
    # Queues no worker reads, so the three messages stay where the page must count them.
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    with override_settings(SQS_QUEUE_PREFIX=prefix):
        client = boto3.client("sqs", region_name=settings.AWS_REGION)
        url = client.get_queue_url(QueueName=sqs_queue_name("media"))["QueueUrl"]
        for n in range(3):
            client.send_message(QueueUrl=url, MessageBody=f"waiting {n}")
        queue_depths_record()
    flower = FlowerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix, "CELERY_MONITOR_URL": monitored.redis.url},
        log_dir=run_dir,
    )
    try:
        wait_until(
            lambda: monitored.worker.hostname in (flower.request("/api/workers")[1] or {}),
            timeout=60,
            message="Flower to see the worker on the channel",
        )
        page = flower.get("/broker")
        # It listed the channel's own Redis queues (default, media, …) under the channel's URL.
        assert "Job queues (Amazon SQS)" in page
        assert f"monitoring channel ({monitored.redis.url}), carries only worker events" in page
        assert "/ops/operations/" in page
        media = re.search(r'<tr id="media">(.*?)</tr>', page, re.S)
        assert media, page
        cells = re.findall(r"<td[^>]*>\s*(.*?)\s*</td>", media.group(1), re.S)
        assert cells[:5] == [f"{prefix}media", "3", "0", "0", "0"], cells
        assert sorted(re.findall(r'<tr id="([^"]+)">', page)) == sorted(QUEUES)
    finally:
        flower.stop()


@pytest.mark.django_db(transaction=True)
def test_worker_without_a_channel_runs_jobs_and_records_its_heartbeat(
    worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint
) -> None:
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    worker = WorkerProcess(
        env={**worker_env, "SQS_QUEUE_PREFIX": prefix, "CELERY_MONITOR_URL": ""},
        queues=["default", "media"],
        log_dir=run_dir,
    )
    try:
        run = diagnostic(prefix, lines=2, duration_seconds=0.1)
        wait_until(lambda: job_status(run.task_id) == "SUCCESS", timeout=60, message="job")
        heartbeat = wait_until(
            lambda: WorkerHeartbeat.objects.filter(hostname=worker.hostname).first(),
            timeout=60,
            message="the worker's heartbeat row",
        )
        assert isinstance(heartbeat, WorkerHeartbeat)
        assert heartbeat.monitored is False
        assert heartbeat.queues == ["default", "media"]
        assert "monitoring channel" not in worker.log_text()
        assert "task events: OFF" in worker.log_text()
    finally:
        worker.stop()


def test_flower_launcher_refuses_to_start_without_the_channel_and_says_why() -> None:
    env = {k: v for k, v in os.environ.items() if k != "CELERY_MONITOR_URL"}
    result = subprocess.run(
        [sys.executable, "-m", "workers.flower", "--basic-auth=ops:secret"],
        cwd=BASE_DIR,
        env={**env, "DJANGO_DEBUG": "true"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Flower would see no workers: CELERY_MONITOR_URL is not set" in result.stderr


@pytest.mark.parametrize(
    ("argv", "environ"),
    [
        (["--basic-auth=ops"], {}),
        (["--basic-auth=ops:"], {}),
        ([], {"FLOWER_BASIC_AUTH": ":secret"}),
    ],
)
def test_flower_launcher_refuses_a_malformed_login_of_its_own(
    argv: list[str], environ: dict[str, str]
) -> None:
    with pytest.raises(LaunchRefused, match="needs a login"):
        flower_argv(argv, environ, "redis://127.0.0.1:6379/15")
    assert NO_AUTH


def test_flower_signs_in_django_accounts_unless_given_logins_of_its_own() -> None:
    assert not uses_own_logins(flower_argv(["--port=5555"], {}, "redis://x/0"), {})
    assert uses_own_logins(["flower", "--basic-auth=ops:secret"], {})
    assert uses_own_logins(["flower"], {"FLOWER_BASIC_AUTH": "ops:secret"})
    assert uses_own_logins(["flower", "--auth=.*@example\\.com"], {})
    assert uses_own_logins(["flower"], {"FLOWER_AUTH": ".*@example\\.com"})


@pytest.fixture(scope="module")
def flower_on_accounts(
    monitored: Monitored, worker_env: dict[str, str], run_dir: Path
) -> Iterator[FlowerProcess]:
    process = FlowerProcess(
        env={**worker_env, "CELERY_MONITOR_URL": monitored.redis.url},
        log_dir=run_dir,
        django_accounts=True,
    )
    yield process
    process.stop()


def staff_account(username: str, *permissions: str, is_staff: bool = True) -> tuple[str, str]:
    """A Django account with `permissions` ("app.codename"); its login."""
    from django.contrib.auth.models import Permission, User

    password = f"{username}-password"
    user = User.objects.create_user(username, password=password, is_staff=is_staff)
    for name in permissions:
        app_label, codename = name.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    return username, password


@pytest.mark.django_db(transaction=True)
def test_flower_on_django_accounts_lets_view_permission_look_and_control_permission_act(
    flower_on_accounts: FlowerProcess,
) -> None:
    """The admin's rule in Flower: staff with the operations view permission look, the
    control permission acts; a wrong login is asked again, an account without the right
    is told why, and a refused action is recorded under the account that tried it."""
    viewer = staff_account("flower-viewer", "workers.view_operations")
    operator = staff_account(
        "flower-operator", "workers.view_operations", "workers.control_workers"
    )
    outsider = staff_account("flower-outsider", is_staff=False)
    staff_only = staff_account("flower-staff-only")
    flower = flower_on_accounts

    challenge = urllib.request.Request(f"{flower.url}/api/workers")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(challenge, timeout=30)
    assert refused.value.code == 401
    assert refused.value.headers["WWW-Authenticate"] == 'Basic realm="flower"'
    assert flower.request("/workers", login=(viewer[0], "wrong"))[0] == 401
    for login in (outsider, staff_only):
        status, body = flower.request("/api/workers", login=login)
        assert status == 403 and LOOK_REFUSED in body, (login, status, body)
    assert flower.request("/healthcheck", auth=False)[0] == 200
    assert flower.request("/metrics", auth=False)[0] == 401

    assert flower.request("/api/workers", login=viewer)[0] == 200
    assert flower.request("/api/workers", login=operator)[0] == 200
    status, body = flower.request("/api/task/revoke/a-task", method="POST", login=viewer)
    assert status == 403 and ACT_REFUSED in body
    status, body = flower.request("/api/task/revoke/a-task", method="POST", login=operator)
    assert status == 200, body
    assert sorted(
        FlowerAction.objects.filter(target="a-task").values_list("username", "status")
    ) == [("flower-operator", 200), ("flower-viewer", 403)]


def test_flower_launcher_listens_on_loopback_unless_told_otherwise() -> None:
    args = flower_argv(["--port=5555"], {"FLOWER_BASIC_AUTH": "ops:secret"}, "redis://x/0")
    assert args == ["flower", "--address=127.0.0.1", "--port=5555"]
    args = flower_argv(["--address=10.0.0.5", "--basic-auth=ops:secret"], {}, "redis://x/0")
    assert args == ["flower", "--address=10.0.0.5", "--basic-auth=ops:secret"]
    with pytest.raises(LaunchRefused, match="no workers"):
        flower_argv(["--basic-auth=ops:secret"], {}, "")
    assert NO_CHANNEL


def test_events_buffer_while_the_channel_is_down_bounded_and_flush_when_it_returns(
    run_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from workers.celery import app

    port = free_port()
    dispatcher = ChannelEventDispatcher(
        monitor_connection(f"redis://127.0.0.1:{port}/0"), hostname="probe@test", app=app
    )
    try:
        for n in range(MAX_BUFFERED_EVENTS + 100):
            dispatcher.send("worker-heartbeat", n=n)
        assert dispatcher.buffered == MAX_BUFFERED_EVENTS
        assert "monitoring channel: cannot publish events" in caplog.text

        redis = RedisServer(run_dir, port=port)
        try:
            with monitor_connection(redis.url) as connection:
                received: list[dict] = []
                receiver = app.events.Receiver(
                    connection, handlers={"worker-heartbeat": received.append}
                )
                bound_consumer = partial(Consumer, connection.channel())
                for consumer in receiver.get_consumers(bound_consumer, None):
                    consumer.consume()

                def drain() -> None:
                    with suppress(TimeoutError):
                        connection.drain_events(timeout=0.5)

                def delivered_everything() -> bool:
                    dispatcher.send("worker-heartbeat", n=-1)  # the next send flushes
                    drain()
                    return dispatcher.buffered == 0

                wait_until(delivered_everything, timeout=60, message="the buffer to flush")
                last = MAX_BUFFERED_EVENTS + 99

                def arrived() -> bool:
                    drain()
                    return any(event.get("n") == last for event in received)

                wait_until(arrived, timeout=30, message="the last buffered event to arrive")
                # The oldest ones were dropped to keep the buffer bounded.
                assert not any(event.get("n") == 0 for event in received)
            assert "monitoring channel: publishing events again" in caplog.text
        finally:
            redis.stop()
    finally:
        dispatcher.close()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_staff_grow_and_shrink_the_pool_by_clicking_in_flower_and_each_click_is_recorded(
    monitored: Monitored, flower_on_accounts: FlowerProcess, chromium: object
) -> None:
    """Flower's own page, as a person uses it, signed in with their Django account: the
    worker's page, the buttons. A look-only account is shown none (Flower's read-only page:
    each could only answer 403); an operator's clicks grow and shrink the pool. The worker's
    page is
    opened directly (a bookmark, a link from the operations page), so the browser holds the
    login for /worker/ only and must be asked again by the API."""
    from playwright.sync_api import expect

    flower = flower_on_accounts
    viewer = staff_account("pool-viewer", "workers.view_operations")
    operator = staff_account("pool-operator", "workers.view_operations", "workers.control_workers")
    hostname = monitored.worker.hostname
    wait_until(
        lambda: hostname in (flower.request("/api/workers?refresh=1", login=viewer)[1] or {}),
        timeout=60,
        message="Flower to know the worker",
    )
    before = FlowerAction.objects.count()
    for (username, password), may_act in ((viewer, False), (operator, True)):
        context = chromium.new_context(  # type: ignore[attr-defined]
            http_credentials={"username": username, "password": password}
        )
        try:
            page = context.new_page()
            page.goto(f"{flower.url}/worker/{urllib.parse.quote(hostname)}")
            expect(page.locator("#workername")).to_have_text(hostname)
            if not may_act:
                # Nothing to press that would only be refused: no Actions menu (shut down,
                # restart), no pool, consumer or limit controls.
                for name in ("Actions", "Grow", "Shrink", "Apply", "Add", "Cancel Consumer"):
                    expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
                expect(page.locator("#worker-add-consumer, #pool-size")).to_have_count(0)
                continue
            page.get_by_role("button", name="Grow", exact=True).click()
            expect(page.get_by_role("status").filter(has_text="pool").first).to_be_visible()
            wait_until(
                lambda: WorkerHeartbeat.objects.filter(hostname=hostname, concurrency=2).exists(),
                timeout=60,
                message="the pool to grow to two processes",
            )
            page.get_by_role("button", name="Shrink", exact=True).click()
            wait_until(
                lambda: WorkerHeartbeat.objects.filter(hostname=hostname, concurrency=1).exists(),
                timeout=60,
                message="the pool to shrink back to one process",
            )
        finally:
            context.close()
    recorded = list(
        FlowerAction.objects.order_by("at")[before:].values_list(
            "action", "target", "username", "status"
        )
    )
    assert recorded == [
        ("worker pool grow", hostname, "pool-operator", 200),
        ("worker pool shrink", hostname, "pool-operator", 200),
    ]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        # The Operations page read "redis://:**@127.0.0.1:6379/15" for a Redis without one.
        ("redis://127.0.0.1:6379/15", "redis://127.0.0.1:6379/15"),
        ("redis://:secret@127.0.0.1:6379/15", "redis://:**@127.0.0.1:6379/15"),
        ("redis://user:secret@h:6379/0", "redis://user:**@h:6379/0"),
        ("", ""),
    ],
)
def test_the_monitoring_url_hides_a_password_and_invents_none(url: str, shown: str) -> None:
    from workers.monitoring import redacted_url

    assert redacted_url(url) == shown


def flower_status_with_cookie(flower: FlowerProcess, cookie: str) -> int:
    request = urllib.request.Request(f"{flower.url}/api/workers", headers={"Cookie": cookie})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_jobs_homes_flower_link_opens_flower_signed_in_by_the_admin_session(
    monitored: Monitored,
    flower_on_accounts: FlowerProcess,
    chromium: object,
    live_server: object,
    settings: object,
) -> None:
    """A person signed in to the admin clicks Flower on the Jobs home and is in: the browser
    sends Flower (same host, another port) the admin's session cookie. Flower asked for the
    password again, and a browser without a password prompt met a bare 401. Logging out of
    the admin signs out of Flower too; a session without the view permission is refused."""
    from playwright.sync_api import expect

    from tests.support.browser import Tour

    flower = flower_on_accounts
    host = urllib.parse.urlsplit(str(live_server)).hostname
    settings.FLOWER_URL = f"http://{host}:{flower.port}/"  # type: ignore[attr-defined]
    username, password = staff_account(
        "flower-by-session", "workers.view_operations", "django_celery_results.view_taskresult"
    )
    context = chromium.new_context()  # type: ignore[attr-defined]
    try:
        tour = Tour(context.new_page(), str(live_server))
        tour.log_in(username, password)
        tour.page.locator("#place-flower").click()
        expect(tour.page).to_have_url(f"http://{host}:{flower.port}/")
        expect(tour.page.get_by_text(monitored.worker.hostname).first).to_be_visible()
        session = next(c for c in context.cookies() if c["name"] == "sessionid")
        cookie = f"sessionid={session['value']}"
        assert flower_status_with_cookie(flower, cookie) == 200

        tour.page.goto(f"{live_server}/admin/")
        tour.page.locator("#logout-form button").click()
        wait_until(
            lambda: flower_status_with_cookie(flower, cookie) == 401,
            timeout=30,
            message="Flower to refuse the session logged out of",
        )
    finally:
        context.close()

    from django.contrib.auth import get_user_model
    from django.test import Client

    outsider = Client()
    outsider.force_login(get_user_model().objects.create_user("flower-outside", is_staff=True))
    assert flower_status_with_cookie(flower, f"sessionid={outsider.session.session_key}") == 403
    assert flower_status_with_cookie(flower, "sessionid=forged-key") == 401
