"""Shared set-up for benchmarks: Django against a PostgreSQL database of their own, a large
TaskResult table filled in one statement, a median timer and a plain table."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def django_on_postgres(db_name: str = "opsqueue_bench") -> None:
    """Point Django at a dedicated PostgreSQL database (created and migrated if needed)."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_DEBUG", "true")
    os.environ.setdefault("DJANGO_LOG_LEVEL", "WARNING")
    os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/{db_name}")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db_name]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{db_name}"')
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0)


def pgrep(*args: str) -> list[int]:
    found = subprocess.run(["pgrep", *args], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


def cpu_seconds_of(pids: Iterable[int]) -> float:
    """User + system CPU used so far by the processes `pids`."""
    ticks = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue  # ended since it was listed
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def table(headers: list[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [headers, *[[str(c) for c in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def timed(fn: Callable[[], object], repeat: int) -> float:
    """The median of `repeat` calls of `fn`, in milliseconds."""
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


FILL_TASK_RESULTS = """
INSERT INTO django_celery_results_taskresult
    (task_id, status, content_type, content_encoding, result, date_created, date_started,
     date_done, traceback, meta, task_args, task_kwargs, task_name, worker, periodic_task_name)
SELECT 'bench-' || n,
       (%s::text[])[1 + n %% %s],
       'application/json', 'utf-8', '{}', created, created + interval '1 second',
       created + interval '1 second' + (n %% 300) * interval '1 second',
       NULL, '{}', %s, '{}', (%s::text[])[1 + n %% %s], 'bench@host', NULL
FROM (SELECT n, %s::timestamptz - (n::float / %s) * interval '30 days' AS created
      FROM generate_series(1, %s) AS n) AS rows
"""


def task_results_fill(
    cursor: Any,
    *,
    rows: int,
    now: datetime,
    statuses: Sequence[str],
    task_names: Sequence[str],
    task_args: str = "[]",
) -> None:
    """Insert `rows` TaskResult rows `bench-<n>` spread evenly over the 30 days before `now`:
    row n has the status `statuses[n % len]` and the task `task_names[n % len]`, and ran
    for n % 300 seconds, starting a second after it was created."""
    states, names = list(statuses), list(task_names)
    cursor.execute(
        FILL_TASK_RESULTS, [states, len(states), task_args, names, len(names), now, rows, rows]
    )


def sqs_queue_empty(sqs: Any, url: str) -> None:
    """Delete every message the SQS queue at `url` holds (PurgeQueue allows one a minute)."""
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages"):
        entries = [
            {"Id": str(n), "ReceiptHandle": message["ReceiptHandle"]}
            for n, message in enumerate(messages)
        ]
        sqs.delete_message_batch(QueueUrl=url, Entries=entries)
