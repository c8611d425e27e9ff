"""Wait until the dev stack has settled: every job queued before this command started has
finished (the demo's first jobs, run by the workers just started), or the timeout passed.

`make run` prints its login as soon as the web server answers; the workers' start-up and
the demo's first jobs then print screenfuls below it. Once this returns, the login is
printed again, last, where a newcomer looks. Exit status 0: settled; 1: still busy.
"""

from __future__ import annotations

import time
from typing import Any

from celery import states
from django.core.management.base import BaseCommand, CommandParser
from django.db.models import Q
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers.models import Job

UNFINISHED = (states.PENDING, states.RECEIVED, states.STARTED, states.RETRY)


def unfinished_jobs(*, queued_before: Any) -> int:
    """Jobs queued before `queued_before` that have not finished, those deliberately
    deferred to a later time left out."""
    now = timezone.now()
    deferred = Job.objects.filter(run_after__gt=now).values("task_id")
    return (
        TaskResult.objects.filter(date_created__lte=queued_before, status__in=UNFINISHED)
        .exclude(Q(task_id__in=deferred))
        .count()
    )


class Command(BaseCommand):
    help = "Wait until the jobs queued so far have finished (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        started = timezone.now()
        deadline = time.monotonic() + timeout
        while unfinished_jobs(queued_before=started):
            if time.monotonic() > deadline:
                raise SystemExit(1)
            time.sleep(1)
