"""Shared fixtures: real PostgreSQL (pytest-django), a real AWS-compatible endpoint
(moto_server) and real Celery worker processes consuming from its SQS queues."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.browser import CHROMIUM, CHROMIUM_ARGS, PASSWORD, Tour
from tests.support.monitoring import (
    MONITORED_QUEUES,
    FlowerProcess,
    Monitored,
    RedisServer,
    sqs_queues_named,
)
from tests.support.servers import (
    AwsEndpoint,
    SharedWorker,
    WorkerProcess,
    aws_environment,
    log_tail,
    new_queue_prefix,
    own_queues_create,
)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the test, so fixtures can tell that it failed."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    worker = getattr(item, "funcargs", {}).get("worker")
    if report.failed and isinstance(worker, WorkerProcess):
        # What the worker did meanwhile: the test's own output rarely says why a job it
        # waited on never ran.
        report.sections.append(("the worker's log, its end", log_tail(worker)))
    return report


@pytest.fixture(autouse=True)
def broker_health_forgotten() -> Iterator[None]:
    """What a test taught this process about SQS, media storage or the monitoring channel (a
    hanging endpoint it pointed at) is forgotten after it: the next test would otherwise be
    refused jobs or uploads for the health check's lifetime, with nothing in it to say why."""
    yield
    from media_pipeline.storage import media_storage_health
    from workers.monitoring import monitoring_health
    from workers.outbox import broker_health

    broker_health.reset()
    media_storage_health.reset()
    monitoring_health.reset()


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test database, dropped only once this process's outbox relay has let go
    of its connection: it keeps one through a busy spell, and DROP DATABASE refuses while a
    connection is open."""
    yield
    from workers.outbox import relay

    relay.settle(timeout=30)


@pytest.fixture(scope="session")
def run_dir() -> Iterator[Path]:
    """Logs of the servers a test session starts; kept on failure for reading."""
    path = Path(tempfile.mkdtemp(prefix="opsqueue-tests-"))
    yield path
    if os.environ.get("KEEP_TEST_LOGS") != "1":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def aws(run_dir: Path) -> Iterator[AwsEndpoint]:
    """The local AWS-compatible endpoint, with this process's clients pointed at it."""
    endpoint = AwsEndpoint(run_dir)
    saved = dict(os.environ)
    os.environ.update(aws_environment(endpoint.url, os.environ["SQS_QUEUE_PREFIX"]))
    yield endpoint
    os.environ.clear()
    os.environ.update(saved)
    endpoint.stop()


@pytest.fixture
def endpoint(run_dir: Path) -> Iterator[AwsEndpoint]:
    """An endpoint of this test's own, apart from the session's: one it may halt and restart
    (an SQS outage) without touching what other tests use."""
    endpoint = AwsEndpoint(run_dir)
    yield endpoint
    endpoint.stop()


@pytest.fixture(scope="session")
def sqs_queues(aws: AwsEndpoint) -> AwsEndpoint:
    from django.core.management import call_command

    call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
    return aws


@pytest.fixture
def prefix(aws: AwsEndpoint) -> str:
    """A queue prefix of the test's own, its queues made in the session's endpoint: a worker
    started on it reads only what the test sends there (`publishing_to`). A module may
    define its own (tests/workers/test_message_templates.py publishes there throughout)."""
    prefix = new_queue_prefix()
    own_queues_create(aws, prefix)
    return prefix


@pytest.fixture(scope="session")
def worker_env(django_db_setup: None, sqs_queues: AwsEndpoint) -> dict[str, str]:
    """Environment for a worker process: the test database and the local endpoint."""
    from django.db import connection

    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db["PASSWORD"] else "")
    return {
        **aws_environment(sqs_queues.url, os.environ["SQS_QUEUE_PREFIX"]),
        "DATABASE_URL": f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}",
        "DJANGO_DEBUG": "true",
        "JOB_LOG_FLUSH_SECONDS": os.environ["JOB_LOG_FLUSH_SECONDS"],
    }


@pytest.fixture(scope="session")
def shared_worker(worker_env: dict[str, str], run_dir: Path) -> Iterator[SharedWorker]:
    shared = SharedWorker(worker_env, run_dir)
    yield shared
    shared.stop()


@pytest.fixture
def worker(
    shared_worker: SharedWorker, transactional_db: None, sqs_queues: AwsEndpoint
) -> Iterator[WorkerProcess]:
    """The shared worker, for one test. Requesting the database here makes this teardown
    run before the database's: the worker finishes what the test left queued before the
    tables are emptied under it (a flush racing a task's row locks deadlocks)."""
    yield shared_worker.running()
    wait_for_idle_queues(sqs_queues)


def wait_for_idle_queues(aws: AwsEndpoint, timeout: float = 60.0) -> None:
    from workers.broker import sqs_queue_name
    from workers.outbox import relay
    from workers.queues import QUEUES

    relay.drain(timeout=timeout)
    sqs = aws.client("sqs")
    urls = [sqs.get_queue_url(QueueName=sqs_queue_name(q))["QueueUrl"] for q in QUEUES]

    def messages() -> int:
        total = 0
        for url in urls:
            counts = sqs.get_queue_attributes(
                QueueUrl=url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            total += sum(int(v) for v in counts.values())
        return total

    deadline = time.monotonic() + timeout
    quiet_checks = 0
    # Twice empty in a row: a task that just finished may have queued a follow-up.
    while quiet_checks < 2 and time.monotonic() < deadline:
        quiet_checks = quiet_checks + 1 if messages() == 0 else 0
        time.sleep(0.3)


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the session's browser tests (each gets its own context)."""
    from playwright.sync_api import expect, sync_playwright

    # Playwright's sync API runs an event loop in this thread from here on. The tests' own
    # ORM calls happen between browser steps, never during one, so Django's guard against
    # ORM calls from async code does not apply to them.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    # Pages wait on workers: a job, a plan, a reload when it ends. The machine is shared.
    expect.set_options(timeout=30_000)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def tour(
    chromium: Any, live_server: Any, worker: WorkerProcess, request: pytest.FixtureRequest
) -> Iterator[Tour]:
    """A superuser "ops", logged in through the login form, in a fresh browser context.

    A failing test leaves a screenshot and the page's HTML under test-artifacts/browser/.
    """
    from django.contrib.auth import get_user_model
    from django.db import connections

    get_user_model().objects.create_superuser("ops", "ops@example.com", PASSWORD)
    context = chromium.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(30_000)
    tour = Tour(context.new_page(), str(live_server))
    try:
        tour.log_in("ops")
        yield tour
        failed = any(
            getattr(request.node, f"report_{phase}", None) is not None
            and getattr(request.node, f"report_{phase}").failed
            for phase in ("setup", "call")
        )
        if failed:
            print(f"browser artifacts: {tour.save_artifacts(request.node.nodeid)}")
    finally:
        context.close()
        # Calls made while Playwright's loop turned may have opened connections of their
        # own; closed here, or the test database cannot be flushed and dropped.
        connections.close_all()


@pytest.fixture(scope="module")
def monitored(worker_env: dict[str, str], run_dir: Path, aws: AwsEndpoint) -> Iterator[Monitored]:
    """A worker with one process on its own SQS queues and a private monitoring channel,
    for the tests of one module: what it runs, Flower (`flower`) sees."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    redis = RedisServer(run_dir)
    worker = WorkerProcess(
        env={
            **worker_env,
            "SQS_QUEUE_PREFIX": prefix,
            "CELERY_MONITOR_URL": redis.url,
            "WORKER_HEARTBEAT_SECONDS": "1",
        },
        queues=MONITORED_QUEUES,
        log_dir=run_dir,
        concurrency=1,
    )
    yield Monitored(prefix, redis, worker)
    worker.stop()
    redis.stop()


@pytest.fixture(scope="module")
def flower(
    monitored: Monitored, worker_env: dict[str, str], run_dir: Path
) -> Iterator[FlowerProcess]:
    """Flower on the `monitored` worker's channel."""
    process = FlowerProcess(
        env={**worker_env, "CELERY_MONITOR_URL": monitored.redis.url}, log_dir=run_dir
    )
    yield process
    process.stop()
