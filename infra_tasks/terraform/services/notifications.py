"""E-mail about terraform workspaces, sent after the change it reports is committed.

A mail server that fails is logged and nothing else: the drift is recorded either way, and
the worker step that found it goes on.
"""

from __future__ import annotations

import logging
import smtplib

from django.core.mail import send_mail
from django.db import transaction

from infra_tasks.terraform import cli
from infra_tasks.terraform.models import TerraformWorkspace
from workers.selectors import staff_email_addresses

logger = logging.getLogger(__name__)


def drift_notify_on_commit(workspace: TerraformWorkspace, summary: cli.PlanSummary) -> None:
    """Tell the workspace's people (or staff) about drift once the transaction commits."""
    transaction.on_commit(lambda: drift_notify(workspace, summary))


def drift_notify(workspace: TerraformWorkspace, summary: cli.PlanSummary) -> bool:
    """Send the drift e-mail; False (and a logged error) when it could not be sent."""
    recipients = [u.email for u in workspace.notify.filter(is_active=True) if u.email]
    if not recipients:
        recipients = staff_email_addresses()
    if not recipients:
        logger.warning("drift in %s but no staff e-mail address to tell", workspace)
        return False
    try:
        send_mail(
            subject=f"[opsqueue] Terraform drift in {workspace}",
            message=(
                f"A scheduled plan of workspace {workspace} ({workspace.directory}) found "
                f"changes made outside opsqueue: {summary}.\n\nReview it in the admin and queue "
                "a plan to bring the infrastructure back to its configuration."
            ),
            from_email=None,
            recipient_list=recipients,
        )
    except (smtplib.SMTPException, OSError):
        logger.exception("drift in %s: the e-mail to %s could not be sent", workspace, recipients)
        return False
    return True
