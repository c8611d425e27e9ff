"""Demo data for the dev stack: a few diagnostic runs, some failing, so the Jobs dashboard has
something to filter, retry (one by one or in bulk), discard, and figures on the operations
page (queued once, on the first `make run`); and groups that show the permission rule at work.

"Look only" holds every view permission and nothing else: its members see every page, every
job and every log, and can change, run or queue nothing. "Database operators" see and
operate managed databases, and may run their schedules from Periodic tasks. Add a user to
either under Accounts → Users to try the admin as that person.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from workers.enqueue import Requester
from workers.models import DiagnosticRun
from workers.services import diagnostic_run_start

FAILING = 3
SUCCEEDING = 3
LOOK_ONLY = "Look only"
DATABASE_OPERATORS = "Database operators"


def seed(*, stdout: Any) -> None:
    groups_seed(stdout=stdout)
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


def groups_seed(*, stdout: Any) -> None:
    look_only, _ = Group.objects.get_or_create(name=LOOK_ONLY)
    look_only.permissions.set(Permission.objects.filter(codename__startswith="view_"))
    operators, _ = Group.objects.get_or_create(name=DATABASE_OPERATORS)
    operators.permissions.set(
        Permission.objects.filter(
            Q(content_type__app_label="rds")
            & Q(codename__in=["view_manageddatabase", "view_databaseaction", "view_divergence"])
            | Q(content_type__app_label="rds", codename="operate_manageddatabase")
            | Q(
                content_type__app_label="django_celery_beat",
                codename__in=["view_periodictask", "change_periodictask"],
            )
            | Q(content_type__app_label="django_celery_results", codename="view_taskresult")
        )
    )
    stdout.write(
        f"permission groups ready: {LOOK_ONLY!r} (every view permission, nothing else), "
        f"{DATABASE_OPERATORS!r} (Accounts → Groups)"
    )
