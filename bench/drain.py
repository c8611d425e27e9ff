"""Benchmark: how fast real workers drain a backlog of no-op jobs, and what a SIGKILLed
worker costs. 2 workers x 2 pool processes on the default queue of a local moto_server,
jobs = diagnostic runs of one line and no pause (their claim, log and result are the cost).

    .venv/bin/python bench/drain.py [--jobs 2000] [--visibility 10]

Second scenario: once half the jobs are done, one worker is SIGKILLed and a fresh one
started. Printed per scenario: jobs/s, and
  lost        jobs that never succeeded                                      (target 0)
  duplicated  jobs whose work completed twice ("done:" logged twice)          (target 0)
  redone      jobs the killed worker held, run again by another (expected: its in-flight ones)
  late        redone jobs finished later than the visibility timeout + 15 s after the kill
                                                                              (target 0)
The visibility timeout is short here (10 s) so the run takes a minute, not several.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _setup import django_on_postgres, table

from tests.support.servers import (
    AwsEndpoint,
    WorkerProcess,
    aws_environment,
    new_queue_prefix,
)

DB = "opsqueue_bench_drain"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--visibility", type=int, default=10)
    args = parser.parse_args()

    logs = Path(tempfile.mkdtemp(prefix="opsqueue-bench-drain-"))
    endpoint = AwsEndpoint(logs)
    prefix = new_queue_prefix()
    os.environ.update(aws_environment(endpoint.url, prefix))
    os.environ["SQS_VISIBILITY_TIMEOUT_SECONDS"] = str(args.visibility)
    os.environ["DJANGO_LOG_LEVEL"] = "WARNING"
    try:
        django_on_postgres(DB)
        from django.core.management import call_command

        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
        env = {
            **aws_environment(endpoint.url, prefix),
            "DATABASE_URL": os.environ["DATABASE_URL"],
            "DJANGO_DEBUG": "true",
            "DJANGO_LOG_LEVEL": "WARNING",
            "SQS_VISIBILITY_TIMEOUT_SECONDS": str(args.visibility),
        }
        rows = [
            drain(args.jobs, env, logs, visibility=args.visibility, kill=False),
            drain(args.jobs, env, logs, visibility=args.visibility, kill=True),
        ]
    finally:
        endpoint.stop()
    print(
        table(
            ["scenario", "jobs", "seconds", "jobs/s", "lost", "duplicated", "redone", "late"],
            rows,
        )
    )
    print("targets: lost 0, duplicated 0, late 0 (redone: the killed worker's in-flight jobs)")


def drain(
    jobs: int, env: dict[str, str], logs: Path, *, visibility: int, kill: bool
) -> list[object]:
    from django_celery_results.models import TaskResult

    from workers.enqueue import Requester
    from workers.models import DiagnosticRun, Job, JobLogChunk
    from workers.outbox import relay
    from workers.services import diagnostic_run_start

    DiagnosticRun.objects.all().delete()
    JobLogChunk.objects.all().delete()
    Job.objects.all().delete()
    TaskResult.objects.all().delete()
    workers = [
        WorkerProcess(env=env, queues=["default"], log_dir=logs, concurrency=2) for _ in (1, 2)
    ]
    killed_at = None
    started = time.monotonic()
    try:
        for _ in range(jobs):
            diagnostic_run_start(requester=Requester.cli("bench"), lines=1, duration_seconds=0)
        relay.drain(timeout=600)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            done = TaskResult.objects.filter(status="SUCCESS").count()
            if done >= jobs:
                break
            if kill and killed_at is None and done >= jobs // 2:
                workers[0].kill()
                killed_at = time.time()
                workers[0] = WorkerProcess(env=env, queues=["default"], log_dir=logs, concurrency=2)
            time.sleep(0.2)
        elapsed = time.monotonic() - started
    finally:
        for worker in workers:
            worker.stop()

    succeeded = TaskResult.objects.filter(status="SUCCESS").count()
    done_twice = 0
    for task_id in DiagnosticRun.objects.filter(attempts__gt=1).values_list("task_id", flat=True):
        text = "\n".join(JobLogChunk.objects.filter(task_id=task_id).values_list("text", flat=True))
        done_twice += text.count("done:") > 1
    redone = list(
        TaskResult.objects.filter(
            task_id__in=DiagnosticRun.objects.filter(attempts__gt=1).values("task_id")
        ).values_list("date_done", flat=True)
    )
    late = (
        sum(1 for d in redone if d and d.timestamp() > killed_at + visibility + 15)
        if killed_at
        else 0
    )
    return [
        "one worker SIGKILLed halfway" if kill else "steady",
        jobs,
        f"{elapsed:.1f}",
        f"{succeeded / elapsed:.1f}",
        jobs - succeeded,
        done_twice,
        len(redone),
        late,
    ]


if __name__ == "__main__":
    main()
