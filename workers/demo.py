"""Demo data for the dev stack: a few diagnostic runs, some failing, so the Jobs dashboard has
something to filter, retry (one by one or in bulk), discard, and figures on the operations
page (queued once, on the first `make run`); a dead letter on the operations page to redrive
or discard; and groups that show the permission rule at work.

"Look only" holds every view permission and nothing else: its members see every page, every
job and every log, and can change, run or queue nothing. "Database operators" see and
operate managed databases, and may run their schedules from Periodic tasks. Add a user to
either under Accounts → Users to try the admin as that person.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from workers.broker import dead_letter_queue_name
from workers.dead_letters import REASON_ATTRIBUTE, sqs_client
from workers.enqueue import Requester
from workers.models import DiagnosticRun
from workers.queue_depths import queue_depths_record
from workers.services import diagnostic_run_start

FAILING = 3
SUCCEEDING = 3
LOOK_ONLY = "Look only"
DATABASE_OPERATORS = "Database operators"


def seed(*, stdout: Any) -> None:
    groups_seed(stdout=stdout)
    dead_letter_seed(stdout=stdout)
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


# Shown whole on the operations page, whose preview of a message keeps 60 characters.
DEMO_BODY = "demo: a message that is no job; Discard removes it"


def dead_letter_seed(*, stdout: Any) -> None:
    client = sqs_client()
    try:
        url = client.get_queue_url(QueueName=dead_letter_queue_name("default"))["QueueUrl"]
        depth = client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"]
        if int(depth) == 0:
            client.send_message(
                QueueUrl=url,
                MessageBody=DEMO_BODY,
                MessageAttributes={
                    REASON_ATTRIBUTE: {"DataType": "String", "StringValue": "not a Celery job"}
                },
            )
        queue_depths_record()
    except (BotoCoreError, ClientError) as exc:
        stdout.write(f"no demo dead letter: {exc}")
        return
    stdout.write("demo dead letter in the default queue's dead-letter queue")
