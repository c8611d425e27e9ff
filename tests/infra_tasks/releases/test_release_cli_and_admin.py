"""The release command as the deploy pipeline runs it (a real process), in-process runs, and
the admin's "Run pending migrations"."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from io import StringIO

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client
from django.urls import reverse
from django_celery_results.models import TaskResult

from infra_tasks.releases.locking import ADVISORY_LOCK_KEY
from infra_tasks.releases.models import Release, ReleaseState
from tests.infra_tasks.releases.probe.models import Switch
from tests.infra_tasks.releases.support import (
    PROBE_MIGRATIONS,
    log_of,
    other_session,
    plan_of,
    probe_applied,
    probe_at,
    release_finished,
)
from tests.support.servers import AwsEndpoint, WorkerProcess
from workers.devstack import BASE_DIR
from workers.models import Job, RequesterKind

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("probe_restored")]

RUN_URL = "/admin/releases/release/run/"


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=BASE_DIR,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_release_command_process_streams_the_log_and_exits_with_the_result(
    worker: WorkerProcess, worker_env: dict[str, str]
) -> None:
    probe_at("0002")
    Switch.objects.create(name="fail")

    failed = manage("release", "--version", "cli-1", "--wait", "--timeout", "120", env=worker_env)
    assert failed.returncode == 1, failed.stderr
    assert "release cli-1: queued as job" in failed.stdout
    assert "  apply release_probe.0005_fail" in failed.stdout
    assert "!! release_probe.0005_fail failed: RuntimeError" in failed.stdout
    assert "CommandError: release cli-1 failed: release_probe.0005_fail failed" in failed.stderr

    Switch.objects.all().delete()
    fixed = manage("release", "--version", "cli-1", "--wait", "--timeout", "120", env=worker_env)
    assert fixed.returncode == 0, fixed.stderr
    assert "release cli-1: queued again as job" in fixed.stdout
    assert "release cli-1 succeeded: applied 1 migration(s)" in fixed.stdout

    same = manage("release", "--version", "cli-1", "--wait", env=worker_env)
    assert same.returncode == 0, same.stderr
    assert "already succeeded" in same.stdout and "nothing to do" in same.stdout


def test_run_here_migrates_in_process_recorded_like_a_job() -> None:
    probe_at("0002")
    out = StringIO()

    call_command("release", "--version", "here-1", "--run-here", stdout=out)

    record = Release.objects.get(version="here-1")
    assert (record.state, record.applied) == (ReleaseState.SUCCEEDED, 3)
    assert record.plan == plan_of("0003_widget_colour", "0004_hold", "0005_fail")
    assert record.requester_label == "manage.py release --run-here"
    job = Job.objects.get(task_id=record.task_id)
    assert (job.queue, job.requester_kind) == ("in-process", RequesterKind.CLI)
    result = TaskResult.objects.get(task_id=record.task_id)
    assert result.status == "SUCCESS" and result.date_started and result.date_done
    lines = log_of(record.task_id)
    assert "  apply release_probe.0004_hold" in lines
    assert lines[-1] == "succeeded: applied 3 migration(s)"
    # What was logged is what the terminal saw.
    assert "  apply release_probe.0004_hold" in out.getvalue()
    assert probe_applied() == PROBE_MIGRATIONS


def test_run_here_waits_for_the_lock_up_to_the_bound_then_fails_clearly(settings) -> None:
    settings.RELEASE_LOCK_WAIT_SECONDS = 1
    probe_at("0002")
    with other_session() as other:
        other.execute("SELECT pg_advisory_lock(%s)", [ADVISORY_LOCK_KEY])
        with pytest.raises(CommandError, match="after waiting 1s; nothing was migrated"):
            call_command("release", "--version", "here-2", "--run-here", stdout=StringIO())
    assert probe_applied() == PROBE_MIGRATIONS[:2]


def test_admin_previews_the_plan_then_queues_the_release_as_the_user(
    worker: WorkerProcess, client: Client
) -> None:
    probe_at("0002")
    user = get_user_model().objects.create_user("ops", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_release"))
    client.force_login(user)
    changelist = client.get(reverse("admin:releases_release_changelist"))
    assert changelist.status_code == 200
    assert b"Run pending migrations" not in changelist.content
    assert client.get(RUN_URL).status_code == 403
    assert client.post(RUN_URL, {"version": "web-0"}).status_code == 403
    assert not Release.objects.exists()

    user.user_permissions.add(Permission.objects.get(codename="run_release"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    assert (
        b"Run pending migrations"
        in client.get(reverse("admin:releases_release_changelist")).content
    )
    preview = client.get(RUN_URL)
    assert preview.status_code == 200
    for name in ("0003_widget_colour", "0004_hold", "0005_fail"):
        assert name.encode() in preview.content
    assert not Release.objects.exists()  # previewing queues nothing

    response = client.post(RUN_URL, {"version": "web-1"})
    record = Release.objects.get(version="web-1")
    assert response.status_code == 302
    # Not the job's page: this user may not open job pages (it would answer 403).
    assert response["Location"] == reverse("admin:releases_release_change", args=[record.pk])
    page = client.get(response["Location"])
    assert page.status_code == 200 and b"release web-1" in page.content
    assert (record.requester_kind, record.requested_by) == (RequesterKind.USER, user)
    assert LogEntry.objects.filter(user=user, object_id=str(record.pk)).exists()
    done = release_finished("web-1")
    assert (done.state, done.applied) == (ReleaseState.SUCCEEDED, 3)

    # Read-only: the record can be viewed, not added, changed or deleted.
    page = client.get(reverse("admin:releases_release_change", args=[record.pk]))
    assert page.status_code == 200
    assert b"0005_fail" in page.content and b'name="_save"' not in page.content
    assert client.get(reverse("admin:releases_release_add")).status_code == 403
    assert client.get(reverse("admin:releases_release_delete", args=[record.pk])).status_code == 403


def test_whom_may_run_releases_but_not_look_at_them_is_told_on_the_jobs_home(
    sqs_queues: AwsEndpoint, client: Client
) -> None:
    """Run pending migrations needs only run_release; the release's page and its job's need
    their view permissions. Without them the person lands on the Jobs home, told what was
    queued, with no link that would refuse them, instead of on a 403."""
    user = get_user_model().objects.create_user("runner", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="run_release"))
    client.force_login(user)

    response = client.post(RUN_URL, {"version": "web-blind"}, follow=True)

    record = Release.objects.get(version="web-blind")
    assert response.redirect_chain == [(reverse("admin:index"), 302)]
    page = response.content.decode()
    assert f"Release web-blind queued as job {record.task_id}." in page
    assert reverse("admin:releases_release_change", args=[record.pk]) not in page
    assert reverse("workers:job-detail", args=[record.task_id]) not in page
    assert LogEntry.objects.filter(user=user, object_id=str(record.pk)).exists()


def test_the_run_page_links_only_where_whom_may_run_but_not_look_may_go(client: Client) -> None:
    """Its breadcrumbs and Cancel led to the release list (403) and the app's index (404)
    for whoever may run releases without looking at them."""
    user = get_user_model().objects.create_user("runner", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="run_release"))
    client.force_login(user)

    page = client.get(RUN_URL).content.decode()

    links = set(re.findall(r'href="(/admin/[^"]*)"', page)) - {"/admin/logout/"}
    assert reverse("admin:index") in links
    for link in links:
        assert client.get(link).status_code == 200, link
    assert reverse("admin:releases_release_changelist") not in links


@pytest.mark.parametrize(
    ("allow_unsafe", "findings", "shown"),
    [
        (False, [], "not allowed (the default)"),
        # The dev stack's bootstrap: allowed, yet nothing unsafe was pending.
        (True, [], "allowed, and not needed: nothing backward-incompatible was pending"),
        (
            True,
            [{"migration": "m", "operation": "RemoveField", "reason": "old code reads it"}],
            "allowed for the 1 operation(s) listed below",
        ),
    ],
)
def test_the_release_page_says_whether_allowing_unsafe_migrations_mattered(
    allow_unsafe: bool, findings: list[dict[str, str]], shown: str
) -> None:
    release = Release.objects.create(
        version="v1",
        requester_kind=RequesterKind.CLI,
        requester_label="manage.py release --run-here",
        allow_unsafe=allow_unsafe,
        unsafe_findings=findings,
    )
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    page = client.get(reverse("admin:releases_release_change", args=[release.pk]))
    assert shown in page.content.decode()
