"""Outbox relay publish rate while workers drain the queue beside it.

Two workers x two processes consume no-op jobs from the default queue on a local
moto_server while this process publishes a backlog of recorded jobs:

- one by one: `SendMessage` per job, what the relay did before batching;
- the relay: `SendMessageBatch`, ten per request (workers/sqs_batch.py).

Target: the relay publishes >= 5x the one-by-one rate (issue 16 measured ~16 jobs/s then),
both measured here in the same run.
Every job is recorded (Job + PENDING TaskResult) before the clock starts, as the web
process does; the figure is jobs published per second, and beside it the rate at which the
workers finished them.

    .venv/bin/python bench/relay.py [jobs]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from _setup import ROOT, django_on_postgres, sqs_queue_empty, table

sys.path.insert(0, str(ROOT))
from tests.support.servers import AwsEndpoint, WorkerProcess, aws_environment

DB = "opsqueue_bench_relay"


def recorded_jobs(count: int) -> list[Any]:
    from django.db import transaction

    from workers.enqueue import Requester, job_message, job_record_pending, new_task_id
    from workers.tasks import diagnostic_run_execute

    requester = Requester.system("bench")
    # Run 0 does not exist: the task looks it up and returns, a no-op job.
    jobs = [
        job_message(diagnostic_run_execute, new_task_id(), requester, [0], {}, {})
        for _ in range(count)
    ]
    with transaction.atomic():
        for job in jobs:
            job_record_pending(job, requester=requester)
    return jobs


def one_by_one(jobs: list[Any]) -> None:
    from django.utils import timezone

    from workers.models import Job
    from workers.outbox import publish_now

    for start in range(0, len(jobs), 50):
        batch = jobs[start : start + 50]
        for job in batch:
            publish_now(job)
        Job.objects.filter(task_id__in=[job.task_id for job in batch]).update(
            sent_at=timezone.now()
        )


def through_relay(jobs: list[Any]) -> None:
    from workers.outbox import relay

    for job in jobs:
        relay.submit(job)
    assert relay.drain(timeout=600), "the relay did not catch up"


PUBLISHERS = {"one by one (SendMessage)": one_by_one, "relay (SendMessageBatch)": through_relay}


def measure_idle(publish: Callable[[list[Any]], None], count: int) -> tuple[float, float]:
    """Jobs published per second with no worker running, and this process's CPU
    milliseconds per job; the queue is emptied after, so each publisher starts alike
    (moto_server gets slower as its queue grows)."""
    jobs = recorded_jobs(count)
    started, cpu = time.perf_counter(), time.process_time()
    publish(jobs)
    rate = count / (time.perf_counter() - started)
    cpu_ms = (time.process_time() - cpu) * 1000 / count
    empty_default_queue()
    return rate, cpu_ms


def empty_default_queue() -> None:
    from workers.broker import sqs_queue_name

    sqs: Any = boto3.client("sqs", region_name="us-east-1")
    sqs_queue_empty(sqs, sqs.get_queue_url(QueueName=sqs_queue_name("default"))["QueueUrl"])


def wait_until_done(ids: list[str]) -> None:
    from django_celery_results.models import TaskResult

    deadline = time.monotonic() + 600
    while TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() < len(ids):
        assert time.monotonic() < deadline, "the workers did not drain the queue"
        time.sleep(0.2)


def measure(publish: Callable[[list[Any]], None], count: int) -> tuple[float, float]:
    """Jobs published per second, and jobs finished by the workers per second."""
    jobs = recorded_jobs(count)
    started = time.perf_counter()
    publish(jobs)
    published = time.perf_counter() - started
    wait_until_done([job.task_id for job in jobs])
    return count / published, count / (time.perf_counter() - started)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    run_dir = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    endpoint = AwsEndpoint(run_dir)
    workers: list[WorkerProcess] = []
    try:
        env = aws_environment(endpoint.url, "bench-")
        os.environ.update(env)
        django_on_postgres(DB)
        from django.core.management import call_command

        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
        worker_env = {
            **env,
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{DB}",
            "DJANGO_DEBUG": "true",
            "DJANGO_LOG_LEVEL": "WARNING",
        }
        measure_idle(through_relay, 20)  # warm-up: connections, queue URLs
        idle = {name: measure_idle(publish, count) for name, publish in PUBLISHERS.items()}
        workers = [
            WorkerProcess(env=worker_env, queues=["default"], log_dir=run_dir, concurrency=2)
            for _ in range(2)
        ]
        measure(through_relay, 20)  # warm-up: the workers' imports and connections
        rows = []
        busy = {}
        for name, publish in PUBLISHERS.items():
            busy[name], drained = measure(publish, count)
            rate, cpu_ms = idle[name]
            rows.append(
                [
                    name,
                    count,
                    f"{rate:,.0f}",
                    f"{cpu_ms:.2f}",
                    f"{busy[name]:,.0f}",
                    f"{drained:,.0f}",
                ]
            )
        headers = ["publisher", "jobs", "published/s idle", "CPU ms/job", "published/s draining"]
        print(table([*headers, "finished/s"], rows))
        relay_name, single_name = "relay (SendMessageBatch)", "one by one (SendMessage)"
        print(
            f"\nrelay / one by one, workers draining: {busy[relay_name] / busy[single_name]:.1f}x"
            f"; idle: {idle[relay_name][0] / idle[single_name][0]:.1f}x; publisher CPU per job:"
            f" {idle[single_name][1] / idle[relay_name][1]:.1f}x less. Target >= 5x "
            "(issue 16 measured ~16 jobs/s one by one with workers draining, 70/s idle; the "
            f"relay now publishes {busy[relay_name] / 16:.0f}x that).\n"
            "The endpoint is moto_server as workers/local_aws.py starts it (moto's per-message "
            "clock reads removed; unpatched, a send costs time in proportion to the messages "
            "the queue holds, and moto bounded both rates near 50/s).\n"
            "Workers: 2 x 2 processes, polling as in the tests, on the same cores as "
            "moto_server and this process; finished/s counts from the first publish to the "
            "last job done."
        )
    finally:
        for worker in workers:
            worker.stop()
        endpoint.stop()


if __name__ == "__main__":
    main()
