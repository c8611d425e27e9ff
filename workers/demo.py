"""Demo jobs for the dev stack: a few diagnostic runs, some failing, so the Jobs dashboard has
something to filter, retry (one by one or in bulk), discard, and figures on the operations
page. Idempotent: queued once, on the first `make run`."""

from __future__ import annotations

from typing import Any

from workers.enqueue import Requester
from workers.models import DiagnosticRun
from workers.services import diagnostic_run_start

FAILING = 3
SUCCEEDING = 3


def seed(*, stdout: Any) -> None:
    if DiagnosticRun.objects.exists():
        stdout.write("demo diagnostic jobs: queued before")
        return
    requester = Requester.system("demo seed")
    for n in range(FAILING + SUCCEEDING):
        diagnostic_run_start(
            requester=requester, lines=20, duration_seconds=0.5 + n, fail=n < FAILING
        )
    stdout.write(
        f"demo diagnostic jobs: {FAILING} failing and {SUCCEEDING} succeeding queued "
        "(retry the failed ones from the job list or their pages)"
    )
