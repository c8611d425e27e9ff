"""CPU the relay spends encoding a job's SQS message: Celery's `apply_async` (through the
recording producer) against a template that Celery's own messages proved
(workers/message_templates.py). Nothing is sent; queue URLs come from a local moto_server.

    .venv/bin/python bench/message_encoding.py [jobs]

Figures: CPU milliseconds per job, medians of five rounds of batches of ten (the relay's
batch under load). No target of its own: it explains the relay's share of
bench/dispatch.py's web CPU.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from _setup import ROOT, table

sys.path.insert(0, str(ROOT))
from tests.support.servers import AwsEndpoint, aws_environment

ROUNDS = 5


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    endpoint = AwsEndpoint(Path(tempfile.mkdtemp(prefix="bench-encoding-")))
    try:
        os.environ.update(aws_environment(endpoint.url, "bench-"))
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
        os.environ.setdefault("DJANGO_DEBUG", "true")
        import django

        django.setup()
        from django.core.management import call_command

        from workers import outbox
        from workers.enqueue import Requester, job_message, new_task_id
        from workers.outbox import OutboundJob, encode_for_sqs
        from workers.tasks import diagnostic_run_execute

        call_command("sqs_queues", stdout=open(os.devnull, "w"))  # noqa: SIM115
        requester = Requester.system("bench")

        def batches() -> list[list[OutboundJob]]:
            jobs = [
                job_message(diagnostic_run_execute, new_task_id(), requester, [n], {}, {})
                for n in range(count)
            ]
            return [jobs[start : start + 10] for start in range(0, count, 10)]

        def cpu_ms_per_job() -> float:
            work = batches()
            started = time.process_time()
            for batch in work:
                encode_for_sqs(batch)
            return (time.process_time() - started) * 1000 / count

        # The relay asks outbox.templating_allowed; saying no is the path before templates.
        templating_allowed = outbox.templating_allowed
        figures: dict[str, list[float]] = {"apply_async": [], "template": []}
        for _ in range(ROUNDS):
            outbox.templating_allowed = lambda app, producer: False
            figures["apply_async"].append(cpu_ms_per_job())
            outbox.templating_allowed = templating_allowed
            figures["template"].append(cpu_ms_per_job())
        rows = [
            [name, count * ROUNDS, f"{statistics.median(values):.3f}"]
            for name, values in figures.items()
        ]
        print(table(["encoding", "jobs", "CPU ms per job"], rows))
        ratio = statistics.median(figures["apply_async"]) / statistics.median(figures["template"])
        print(f"\ntemplate: {ratio:.1f}x less CPU per job than apply_async")
    finally:
        endpoint.stop()


if __name__ == "__main__":
    main()
