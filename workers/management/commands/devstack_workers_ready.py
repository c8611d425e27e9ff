"""Wait until a worker consumes every queue (the operations page's rule), or the timeout.

`make run` starts the web server only once this returns: a newcomer opening the admin while
the workers are still booting would otherwise meet the Jobs home's "no worker takes them"
warning about the demo's first jobs, a false alarm. Exit status 0: every queue is consumed;
1: some still is not when the timeout passed.
"""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.utils import timezone

from workers.operations import queues_without_consumer


class Command(BaseCommand):
    help = "Wait until a worker consumes every queue (development only)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--timeout", type=float, default=120.0)

    def handle(self, *args: Any, timeout: float, **options: Any) -> None:
        deadline = time.monotonic() + timeout
        while queues_without_consumer(now=timezone.now()):
            if time.monotonic() > deadline:
                raise SystemExit(1)
            time.sleep(0.25)
