"""Drift e-mail goes out after commit; a mail server that fails is logged, nothing more."""

from __future__ import annotations

import logging
import smtplib
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction

from infra_tasks.terraform import cli
from infra_tasks.terraform.models import TerraformWorkspace
from infra_tasks.terraform.services import notifications

pytestmark = pytest.mark.django_db

SUMMARY = cli.PlanSummary(add=1, change=0, destroy=0)


@pytest.fixture
def workspace() -> TerraformWorkspace:
    workspace = TerraformWorkspace.objects.create(name="network", directory="network")
    sybil = get_user_model().objects.create_user("sybil", email="sybil@example.com")
    workspace.notify.add(sybil)
    return workspace


def test_drift_mail_is_sent_only_once_the_transaction_commits(
    workspace: TerraformWorkspace, django_capture_on_commit_callbacks: Any
) -> None:
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        notifications.drift_notify_on_commit(workspace, SUMMARY)
        assert not mail.outbox
    assert len(callbacks) == 1
    (sent,) = mail.outbox
    assert sent.to == ["sybil@example.com"] and "network" in sent.subject


def test_a_failing_mail_server_is_logged_and_nothing_else(
    workspace: TerraformWorkspace,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def refuse(**kwargs: Any) -> int:
        raise smtplib.SMTPRecipientsRefused({"sybil@example.com": (550, b"no such user")})

    monkeypatch.setattr(notifications, "send_mail", refuse)
    with (
        caplog.at_level(logging.ERROR, logger=notifications.__name__),
        django_capture_on_commit_callbacks(execute=True),
        transaction.atomic(),
    ):
        TerraformWorkspace.objects.filter(pk=workspace.pk).update(drifted=True)
        notifications.drift_notify_on_commit(workspace, SUMMARY)
    workspace.refresh_from_db()
    assert workspace.drifted, "the drift stays recorded"
    assert "could not be sent" in caplog.text
    assert notifications.drift_notify(workspace, SUMMARY) is False
