"""Demo data for the dev stack: groups that show the permission rule at work.

"Look only" holds every view permission and nothing else: its members see every page, every
job and every log, and can change, run or queue nothing. "Database operators" see and
operate managed databases, and may run their schedules from Periodic tasks. Add a user to
either under Accounts → Users to try the admin as that person.
"""

from __future__ import annotations

from typing import TextIO

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

LOOK_ONLY = "Look only"
DATABASE_OPERATORS = "Database operators"


def seed(*, stdout: TextIO) -> None:
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
