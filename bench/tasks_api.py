"""Cost of enqueueing through Django's Tasks API against calling `job_enqueue` directly.
Target: Tasks API enqueues/s >= 0.8 x direct.

Both record the job (PENDING TaskResult + Job, in a transaction of its own per job, as a
request would) and publish it to SQS on a local moto_server through the outbox relay; the
Tasks API adds argument checks, the requester lookup and its TaskResult object. Best of four
interleaved runs each, every run on fresh queues.

    .venv/bin/python bench/tasks_api.py [jobs]
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _setup import ROOT, django_on_postgres, table

sys.path.insert(0, str(ROOT))
from tests.support.servers import AwsEndpoint, aws_environment


def measure(enqueue: Callable[[], object], count: int) -> tuple[float, float]:
    """Jobs/s by wall clock and by this process's CPU time (the relay thread included);
    every job is published before the clock stops."""
    from django.db import transaction

    from workers.outbox import relay

    for _ in range(20):  # warm-up: connections, queue URL lookup
        with transaction.atomic():
            enqueue()
    relay.drain(timeout=60)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(count):
        with transaction.atomic():
            enqueue()
    assert relay.drain(timeout=120), "the relay did not catch up"
    return count / (time.perf_counter() - wall), count / (time.process_time() - cpu)


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    endpoint = AwsEndpoint(Path(tempfile.mkdtemp(prefix="bench-tasks-api-")))
    try:
        os.environ.update(aws_environment(endpoint.url, "bench-tasks-"))
        django_on_postgres("opsqueue_bench_tasks_api")
        from django.core.management import call_command

        from courses.models import Course
        from courses.tasks import course_outline_report
        from tests.support.broker import publishing_to
        from workers.enqueue import Requester, job_enqueue
        from workers.requesters import requester_scope
        from workers.tasks_backend import celery_task_register

        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
        course, _ = Course.objects.get_or_create(slug="bench", defaults={"title": "Bench"})
        requester = Requester.cli("bench")
        celery_task = celery_task_register(course_outline_report)

        def direct() -> object:
            return job_enqueue(celery_task, requester=requester, args=[course.pk])

        def tasks_api() -> object:
            return course_outline_report.enqueue(course.pk)

        # Each measurement on queues of its own: the local server slows down as a queue
        # that nothing consumes fills up, which would favour whichever runs first.
        runs: dict[str, list[tuple[float, float]]] = {"direct": [], "api": []}
        for round_ in range(4):
            order = ("direct", "api") if round_ % 2 == 0 else ("api", "direct")
            for name in order:
                with publishing_to(f"bench-tasks-{round_}-{name}-"), requester_scope(requester):
                    runs[name].append(measure(direct if name == "direct" else tasks_api, count))
        direct_runs, api_runs = runs["direct"], runs["api"]
        direct_wall, direct_cpu = max(r[0] for r in direct_runs), max(r[1] for r in direct_runs)
        api_wall, api_cpu = max(r[0] for r in api_runs), max(r[1] for r in api_runs)
        ratio_wall, ratio_cpu = api_wall / direct_wall, api_cpu / direct_cpu
        rows: list[list[object]] = [
            ["job_enqueue", count, f"{direct_wall:,.0f}", f"{direct_cpu:,.0f}"],
            ["Tasks API .enqueue()", count, f"{api_wall:,.0f}", f"{api_cpu:,.0f}"],
            ["ratio API/direct", "", f"{ratio_wall:.2f}", f"{ratio_cpu:.2f}"],
        ]
        print(table(["enqueue", "jobs", "jobs/s (wall)", "jobs/s (CPU)"], rows))
        print(
            "\ntarget: ratio >= 0.8. Wall-clock figures include the local SQS server "
            "(moto_server) competing for this machine's cores."
        )
    finally:
        endpoint.stop()


if __name__ == "__main__":
    main()
