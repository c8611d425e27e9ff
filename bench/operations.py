"""Operations page against a large TaskResult table: time per selector and the query plans.

    .venv/bin/python bench/operations.py [--rows 1000000]

Fills TaskResult with `rows` jobs spread over 30 days (inside a transaction that is rolled
back, so the database is left as it was), then times each selector of the page and prints
how PostgreSQL reads TaskResult for each query.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from _setup import django_on_postgres, task_results_fill, timed

django_on_postgres()

from django.db import connection, transaction  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from workers import operations  # noqa: E402

# Six in ten succeed; the rest fail, are cancelled, run or wait (repeating every ten rows).
STATUSES = ["SUCCESS"] * 6 + ["FAILURE", "REVOKED", "STARTED", "PENDING"]
TASK_NAMES = [f"bench.tasks.t{n}" for n in range(40)]


def access_path(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {sql}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
    for line in plan.splitlines():
        if "taskresult" in line:
            return line.strip().split("  (")[0].replace("django_celery_results_", "")[:70]
    return "-"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    rows = parser.parse_args().rows
    if connection.vendor != "postgresql":
        raise SystemExit("needs PostgreSQL (DATABASE_URL)")
    now = timezone.now()
    with transaction.atomic():
        start = time.perf_counter()
        with connection.cursor() as cursor:
            task_results_fill(cursor, rows=rows, now=now, statuses=STATUSES, task_names=TASK_NAMES)
            cursor.execute("ANALYZE django_celery_results_taskresult")
        print(f"filled {rows:,} TaskResult rows over 30 days in {time.perf_counter() - start:.1f}s")
        cases: list[tuple[str, Callable[[], object]]] = [
            ("job_state_counts", lambda: operations.job_state_counts(now=now)),
            ("slowest_tasks", lambda: operations.slowest_tasks(now=now)),
            ("failing_tasks", lambda: operations.failing_tasks(now=now)),
            ("job_timeline", lambda: operations.job_timeline(now=now)),
            ("operations_get (whole page)", lambda: operations.operations_get(now=now)),
        ]
        print(f"\n{'selector':<30} {'median ms':>10}  TaskResult access")
        for name, fn in cases:
            with CaptureQueriesContext(connection) as queries:
                fn()
            paths = {access_path(q["sql"]) for q in queries if "taskresult" in q["sql"]}
            print(f"{name:<30} {timed(fn, 5):>10.1f}  {'; '.join(sorted(paths)) or '-'}")
        transaction.set_rollback(True)


if __name__ == "__main__":
    main()
