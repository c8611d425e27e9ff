"""The job list, its filters and a bulk retry against a million jobs.

    .venv/bin/python bench/job_list.py [--rows 1000000]

Fills TaskResult and Job with `rows` jobs over 30 days (inside a transaction that is rolled
back, so the database is left as it was), then times whole admin requests through Django's
test client as a superuser: the job list with each filter (50 rows and the capped count),
the metrics endpoint, and a bulk retry of 500 failed jobs selected by filter ("select all"),
confirmation page and confirmed batch. SQS is a local moto_server.

Targets: every list request under 300 ms; the confirmed retry of 500 under 3 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from _setup import ROOT, django_on_postgres, table, task_results_fill, timed

sys.path.insert(0, str(ROOT))
from tests.support.servers import AwsEndpoint, aws_environment

TASKS = [
    ("workers.tasks.diagnostic_run_execute", "default"),
    ("media_pipeline.tasks.course_cover_variants_build", "media"),
    ("infra_tasks.terraform.tasks.run_plan_execute", "infra"),
    ("infra_tasks.terraform.tasks.run_apply_execute", "infra"),
    ("infra_tasks.rds.tasks.database_scheduled_run", "infra"),
    ("infra_tasks.releases.tasks.release_execute", "release"),
    ("workers.tasks.queue_depths_record", "default"),
]

# Eight in ten succeed, one fails, one is cancelled (the statuses repeat every ten rows).
STATUSES = ["SUCCESS"] * 6 + ["FAILURE", "REVOKED", "SUCCESS", "SUCCESS"]
FILL_JOBS = """
INSERT INTO workers_job
    (task_id, task_name, queue, requester_kind, requester_label, created_at, claimed_by)
SELECT task_id, task_name, (%s::text[])[array_position(%s::text[], task_name)],
       'user', (ARRAY['ops','alice','bob'])[1 + (id %% 3)], date_created, ''
FROM django_celery_results_taskresult WHERE task_id LIKE 'bench-%%'
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    endpoint = AwsEndpoint(Path(tempfile.mkdtemp(prefix="bench-job-list-")))
    try:
        os.environ.update(aws_environment(endpoint.url, "bench-"))
        django_on_postgres()
        run(rows)
    finally:
        endpoint.stop()


def run(rows: int) -> None:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection, transaction
    from django.test import Client
    from django.utils import timezone

    from tests.workers.jobs import job_row

    settings.ALLOWED_HOSTS = ["testserver"]
    call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
    names = [name for name, _ in TASKS]
    queues = [queue for _, queue in TASKS]
    url = "/admin/django_celery_results/taskresult/"
    with transaction.atomic():
        start = time.perf_counter()
        with connection.cursor() as cursor:
            task_results_fill(
                cursor,
                rows=rows,
                now=timezone.now(),
                statuses=STATUSES,
                task_names=names,
                task_args="[1]",
            )
            cursor.execute(FILL_JOBS, [queues, names])
            cursor.execute("ANALYZE django_celery_results_taskresult")
            cursor.execute("ANALYZE workers_job")
        print(f"filled {rows:,} jobs over 30 days in {time.perf_counter() - start:.1f}s\n")
        user = get_user_model().objects.create_superuser("bench-ops", "b@example.com", "x")
        get_user_model().objects.create_user("alice", is_staff=True)
        client = Client()
        client.force_login(user)

        def get(query: str) -> Callable[[], object]:
            def request() -> object:
                response = client.get(f"{url}?{query}" if query else url)
                assert response.status_code == 200, (query, response.status_code)
                return response

            return request

        cases = [
            ("no filter", ""),
            ("state FAILURE", "status__exact=FAILURE"),
            ("family terraform", "family=terraform"),
            ("task cover", "task=media_pipeline.tasks.course_cover_variants_build"),
            ("queue release", "queue=release"),
            ("requester alice", "requester=user:alice"),
            ("last hour", "created=1h"),
            ("older than 30 days", "created=older-30d"),
            ("failed, not followed up", "followup=open"),
            ("FAILURE + queue + 24h", "status__exact=FAILURE&queue=infra&created=24h"),
            ("page 100", "p=100"),
        ]
        results = [[label, f"{timed(get(query), 3):.0f}"] for label, query in cases]
        results.append(
            ["/ops/metrics.json", f"{timed(lambda: client.get('/ops/metrics.json'), 3):.0f}"]
        )
        print(table(["job list request", "ms (median of 3)"], results))

        for _ in range(500):
            job_row("workers.tasks.diagnostic_run_execute", "FAILURE", requester="bulkbench")
        get_user_model().objects.create_user("bulkbench", is_staff=True)
        across = f"{url}?requester=user:bulkbench&status__exact=FAILURE"
        form = {
            "action": "retry_jobs",
            "select_across": "1",
            "index": "0",
            "_selected_action": ["0"],
        }
        start = time.perf_counter()
        confirm = client.post(across, form)
        confirm_ms = (time.perf_counter() - start) * 1000
        assert b"All 500 jobs matching the filter will be retried." in confirm.content
        start = time.perf_counter()
        done = client.post(across, {**form, "post": "yes"})
        retry_ms = (time.perf_counter() - start) * 1000
        assert done.status_code == 302, done.status_code
        from workers.models import Job

        assert Job.objects.filter(retry_of__requester_label="bulkbench").count() == 500
        print()
        print(
            table(
                ["bulk retry of 500 failed jobs (select all matching)", "ms"],
                [
                    ["confirmation page (counts)", f"{confirm_ms:.0f}"],
                    ["confirmed: 500 new jobs, 500 audit entries", f"{retry_ms:.0f}"],
                ],
            )
        )
        print("\ntargets: list requests < 300 ms; confirmed retry of 500 < 3000 ms")
        transaction.set_rollback(True)


if __name__ == "__main__":
    main()
