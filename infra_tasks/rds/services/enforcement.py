"""The enforcement pass: compare each enforced database's desired state with AWS's, put back
what drifted, and tell staff about a database still off after a correction.

Each database is decided in its own transaction (`_enforce_one`); the mail goes after that
commits. So an SMTP error neither undoes the divergence recorded nor stops the pass for the
databases after it: it is logged, reported under "errors", and the next pass tries again.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone

from infra_tasks.rds.models import (
    ActionKind,
    ActionState,
    DatabaseAction,
    DesiredState,
    Divergence,
    ManagedDatabase,
)
from infra_tasks.rds.selectors import database_effective_desired_state, database_status_matches
from infra_tasks.rds.services.actions import database_action_enqueue, database_operator
from workers.enqueue import Requester
from workers.joblog import JobLogWriter
from workers.queues import QUEUES
from workers.selectors import job_requester_by_hand, staff_email_addresses

logger = logging.getLogger(__name__)

IN_STEP = "in step"
NOTIFIED = "still off after a retry; staff notified"


def databases_enforce(
    *, task_id: str, now: datetime | None = None, client: Any = None
) -> dict[str, Any]:
    """Compare desired with actual state; put back what drifted; tell staff what stays off."""
    now = now or timezone.now()
    report: dict[str, Any] = {"checked": 0, "diverged": [], "notified": [], "errors": []}
    # Beat's pass corrects as the system; one started by someone (the schedule's Run now)
    # corrects on their behalf, and its corrections name them.
    requester = job_requester_by_hand(task_id=task_id) or Requester.system("rds enforcement")
    with JobLogWriter(task_id) as log:
        for database in ManagedDatabase.objects.filter(enforce=True).order_by("name"):
            report["checked"] += 1
            try:
                status = database_operator(database, log=log, client=client).status()
            except Exception as exc:  # one unreachable database must not stop the pass
                log.line(f"{database.name}: could not read its state: {exc}")
                report["errors"].append(database.name)
                continue
            outcome = _enforce_one(
                database_id=database.pk, status=status, now=now, requester=requester
            )
            log.line(
                f"{database.name}: {status}, should be {outcome['desired']}: {outcome['verdict']}"
            )
            if outcome["verdict"] != IN_STEP:
                report["diverged"].append(database.name)
            if outcome["verdict"] == NOTIFIED:
                # Mail goes after the divergence is committed: an SMTP error is reported here
                # and must neither undo what was recorded nor stop the pass.
                try:
                    _notify_staff(database, desired=outcome["desired"], status=status)
                except Exception as exc:
                    log.line(
                        f"{database.name}: could not e-mail staff, next pass tries again: {exc}"
                    )
                    report["errors"].append(database.name)
                    Divergence.objects.filter(database=database, resolved_at__isnull=True).update(
                        notified_at=None
                    )
                else:
                    report["notified"].append(database.name)
    return report


@transaction.atomic
def _enforce_one(
    *, database_id: int, status: str, now: datetime, requester: Requester
) -> dict[str, str]:
    database = ManagedDatabase.objects.select_for_update().get(pk=database_id)
    database.status = status
    database.status_checked_at = now
    database.save(update_fields=["status", "status_checked_at"])
    desired = database_effective_desired_state(database=database, now=now)
    open_divergence = Divergence.objects.filter(database=database, resolved_at__isnull=True).first()
    if database_status_matches(desired=desired, status=status):
        if open_divergence is not None:
            open_divergence.resolved_at = now
            open_divergence.save(update_fields=["resolved_at"])
        return {"desired": desired, "verdict": IN_STEP}

    # An action older than the infra queue's hard limit is not coming back (lost message,
    # killed worker): it must not keep enforcement quiet forever.
    busy = DatabaseAction.objects.filter(
        database=database,
        state__in=[ActionState.QUEUED, ActionState.RUNNING],
        created_at__gte=now - timedelta(seconds=QUEUES["infra"].time_limit),
    ).exists()
    if open_divergence is None:
        open_divergence = Divergence.objects.create(
            database=database, desired_state=desired, observed_status=status
        )
        verdict = "diverged; putting it back"
    else:
        open_divergence.checks += 1
        open_divergence.observed_status = status
        if busy:
            verdict = "still off; a correction is under way"
        elif open_divergence.notified_at is None:
            # The correction has run and the database is still off: people must look (the
            # caller sends the mail once this is committed).
            open_divergence.notified_at = now
            verdict = NOTIFIED
        else:
            verdict = "still off"
    if not busy:
        record = _corrective_action(database, desired, requester)
        open_divergence.corrective_task_id = record.task_id
    open_divergence.save()
    return {"desired": desired, "verdict": verdict}


def _corrective_action(
    database: ManagedDatabase, desired: str, requester: Requester
) -> DatabaseAction:
    action = ActionKind.STOP if desired == DesiredState.STOPPED else ActionKind.START
    # Nobody waits on the pass to be told to try again: with SQS down, the correction is
    # recorded and sent once it is back, and the pass goes on to the other databases (a
    # refusal here failed the pass and left them unchecked).
    return database_action_enqueue(
        database,
        action,
        requester=requester,
        refuse_if_broker_down=False,
    )


def _notify_staff(database: ManagedDatabase, *, desired: str, status: str) -> None:
    since = Divergence.objects.filter(database=database, resolved_at__isnull=True).first()
    if since is None:
        return
    recipients = staff_email_addresses()
    if not recipients:
        logger.warning("no staff e-mail address to tell that %s is %s", database.name, status)
        return
    send_mail(
        subject=f"[opsqueue] {database.name} is {status}, should be {desired}",
        message=(
            f"The managed database {database} is {status} but its schedule says it should be "
            f"{desired}. Enforcement first saw this at {since.detected_at:%Y-%m-%d %H:%M %Z} "
            f"and tried to put it back; it is still off.\n\n"
            f"Last corrective job: {since.corrective_task_id or 'none'}"
        ),
        from_email=None,
        recipient_list=recipients,
        fail_silently=False,
    )
