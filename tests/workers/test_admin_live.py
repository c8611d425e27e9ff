"""workers/admin_live.py: a page that shows its record's job live reads the job first."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from tests.support.jobs import job_record
from tests.support.races import get_with_commit_after_query, pages_made_as_the_job_ends
from workers.jobs import DIAGNOSTIC_RUN_EXECUTE
from workers.models import DiagnosticRun, RequesterKind

pytestmark = pytest.mark.django_db(transaction=True)

FAILED = (
    '{"exc_type": "DiagnosticFailure", "exc_message": ["failing on purpose"], '
    '"exc_module": "workers.services"}'
)


def test_a_job_page_made_while_its_job_fails_offers_what_a_failed_job_offers_or_reloads() -> None:
    """The job page reloads when its job ends while watched, not when the job had already
    ended as it was made: its buttons (Retry, Discard) must then be a failed job's. The job
    fails (its record committed FAILURE by another connection, as a worker does) after each
    of the page's queries in turn."""
    root = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    client = Client()
    client.force_login(root)

    def running(n: int) -> TaskResult:
        run = DiagnosticRun.objects.create(task_id=f"diagnostic-{n}", fail=True)
        return job_record(
            run.task_id,
            DIAGNOSTIC_RUN_EXECUTE.name,
            status="STARTED",
            requester_kind=RequesterKind.USER,
            requester_label="root",
            task_args=f"[{run.pk}]",
            task_kwargs="{}",
            date_started=timezone.now(),
        )

    def page_with_the_job_failing_after_query(at: int) -> tuple[str, int]:
        result = running(at)
        fails = (
            (
                "UPDATE django_celery_results_taskresult SET status = 'FAILURE', result = %s, "
                "date_done = now() WHERE task_id = %s",
                [FAILED, result.task_id],
            ),
        )
        url = reverse("admin:django_celery_results_taskresult_change", args=[result.pk])
        page, queries = get_with_commit_after_query(client, url, at=at, commit=fails)
        assert page.status_code == 200
        return page.content.decode(), queries

    for at, html in pages_made_as_the_job_ends(
        page_with_the_job_failing_after_query, more_queries_than=3
    ):
        assert 'id="job-actions"' in html, at
