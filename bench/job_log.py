"""Job-log writer throughput into PostgreSQL: 10k and 100k lines.

Targets: 10k lines <= 1 s, 100k lines <= 3 s, 100k/10k ratio <= 12 (linear growth), on
medians of 7 and 3 runs. Beside it, the seed's approach (append each line to one text
column and save the row), which is quadratic; it is run at 2k lines only, because at 10k it
takes minutes.

    .venv/bin/python bench/job_log.py
"""

from __future__ import annotations

import statistics
import time
import uuid

from _setup import django_on_postgres, table

LINE = "module.app.terraform_data.step[17]: Still creating... [10s elapsed] id=3f786850e387"


def writer_seconds(lines: int) -> float:
    from workers.joblog import JobLogWriter
    from workers.models import JobLogChunk

    task_id = f"bench-{uuid.uuid4()}"
    started = time.perf_counter()
    with JobLogWriter(task_id) as log:
        for n in range(lines):
            log.line(f"{n:>7} {LINE}")
    elapsed = time.perf_counter() - started
    JobLogChunk.objects.filter(task_id=task_id).delete()
    return elapsed


def seed_approach_seconds(lines: int) -> float:
    from workers.models import DiagnosticRun

    # One growing text column re-saved per line, as the seed article does.
    row = DiagnosticRun.objects.create(summary={"log": ""})
    started = time.perf_counter()
    text = ""
    for n in range(lines):
        text += f"{n:>7} {LINE}\n"
        DiagnosticRun.objects.filter(pk=row.pk).update(summary={"log": text})
    elapsed = time.perf_counter() - started
    row.delete()
    return elapsed


def main() -> None:
    django_on_postgres()
    writer_seconds(1_000)  # warm-up: connection, imports
    # Medians: a 10k-line run takes tens of milliseconds, where one slow moment skews the
    # ratio.
    ten_k = statistics.median(writer_seconds(10_000) for _ in range(7))
    hundred_k = statistics.median(writer_seconds(100_000) for _ in range(3))
    seed_2k = seed_approach_seconds(2_000)
    rows = [
        ["JobLogWriter", "10,000", f"{ten_k:.3f}", f"{10_000 / ten_k:,.0f}", "<= 1 s"],
        ["JobLogWriter", "100,000", f"{hundred_k:.3f}", f"{100_000 / hundred_k:,.0f}", "<= 3 s"],
        ["seed: one text column", "2,000", f"{seed_2k:.3f}", f"{2_000 / seed_2k:,.0f}", "-"],
    ]
    print(table(["writer", "lines", "seconds", "lines/s", "target"], rows))
    print(f"\n100k/10k ratio: {hundred_k / ten_k:.1f} (target <= 12; 10 is linear)")


if __name__ == "__main__":
    main()
