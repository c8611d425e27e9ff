"""Django's user admin under the one rule: the admin history (who started which job, who
switched, retried or discarded what, and when) outlives the people in it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from workers.enqueue import Requester
from workers.models import Job
from workers.services import diagnostic_run_start

pytestmark = pytest.mark.django_db


def admin_client() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    return client


def test_a_user_who_started_a_job_is_kept_with_their_history_not_deleted(
    sqs_queues: Any,
) -> None:
    """Django deletes a user's LogEntry rows with the user: deleting one whose job is still
    queued or running would leave that job without the entry saying who asked. The user's
    page offers no Delete, its URL refuses, and "delete selected" leaves them out, saying
    so; a user with no history is deleted as before."""
    users = get_user_model().objects
    starter = users.create_user("starter", is_staff=True)
    run = diagnostic_run_start(requester=Requester.for_user(starter), fail=False)
    newcomer = users.create_user("newcomer", is_staff=True)
    client = admin_client()

    page = client.get(reverse("admin:auth_user_change", args=[starter.pk])).content.decode()
    assert reverse("admin:auth_user_delete", args=[starter.pk]) not in page
    assert (
        client.post(
            reverse("admin:auth_user_delete", args=[starter.pk]), {"post": "yes"}
        ).status_code
        == 403
    )

    selected = {"action": "delete_selected", "_selected_action": [starter.pk, newcomer.pk]}
    asked = client.post(reverse("admin:auth_user_changelist"), selected).content.decode()
    assert "Not deleted, kept by their admin history" in asked and "starter" in asked
    client.post(reverse("admin:auth_user_changelist"), {**selected, "post": "yes"})

    left = users.filter(username__in=["starter", "newcomer"]).values_list("username", flat=True)
    assert list(left) == ["starter"]
    assert LogEntry.objects.filter(user=starter).count() == 1  # "Queued job …"
    assert Job.objects.get(task_id=run.task_id).requested_by == starter
