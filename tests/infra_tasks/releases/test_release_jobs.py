"""Releases as jobs: a real worker on the release queue, real PostgreSQL, the probe app's
migrations rolled back so they are pending (see tests/infra_tasks/releases/probe)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import transaction
from django.db.migrations.recorder import MigrationRecorder
from django_celery_results.models import TaskResult

from infra_tasks.releases.models import Release, ReleaseState
from infra_tasks.releases.services import release_start
from tests.infra_tasks.releases.probe.models import Switch
from tests.infra_tasks.releases.support import (
    PROBE,
    PROBE_MIGRATIONS,
    job_status,
    log_of,
    other_session,
    plan_of,
    probe_applied,
    probe_at,
    release_finished,
)
from tests.support.servers import WorkerProcess, wait_until
from workers.enqueue import Requester, job_enqueue, new_task_id
from workers.models import Job, RequesterKind

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("worker", "probe_restored"),
]


def release(*args: str) -> str:
    out = StringIO()
    call_command("release", *args, stdout=out)
    return out.getvalue()


def test_release_records_its_plan_applies_it_once_and_the_same_version_is_then_a_no_op(
    worker: WorkerProcess,
) -> None:
    probe_at("0002")

    out = release("--version", "2026.11.1", "--wait", "--timeout", "120")

    record = Release.objects.get(version="2026.11.1")
    assert f"release 2026.11.1: queued as job {record.task_id} on the release queue" in out
    # The job's log, streamed: its plan, migrate's own output, the result.
    assert "  apply release_probe.0003_widget_colour" in out
    assert "  Applying release_probe.0005_fail..." in out
    assert out.rstrip().endswith("release 2026.11.1 succeeded: applied 3 migration(s)")
    assert record.state == ReleaseState.SUCCEEDED
    assert record.plan == plan_of("0003_widget_colour", "0004_hold", "0005_fail")
    assert record.applied == 3
    assert (record.requester_kind, record.requester_label) == (
        RequesterKind.CLI,
        "manage.py release",
    )
    assert record.started_at is not None and record.finished_at is not None
    assert record.started_at <= record.finished_at
    assert Job.objects.get(task_id=record.task_id).queue == "release"
    job_status(record.task_id, "SUCCESS")
    result = TaskResult.objects.get(task_id=record.task_id)
    assert result.worker == worker.hostname
    assert json.loads(result.result)["applied"] == 3
    assert probe_applied() == PROBE_MIGRATIONS
    assert MigrationRecorder.Migration.objects.filter(app=PROBE).count() == 5

    jobs = TaskResult.objects.count()
    again = release("--version", "2026.11.1", "--wait", "--timeout", "120")
    assert "release 2026.11.1 already succeeded at" in again
    assert again.rstrip().endswith("(applied 3 migration(s)): nothing to do")
    assert TaskResult.objects.count() == jobs

    # A new release with nothing pending succeeds and says so.
    out = release("--version", "2026.11.2", "--wait", "--timeout", "120")
    assert "nothing to do: no migrations are pending" in out
    empty = Release.objects.get(version="2026.11.2")
    assert (empty.state, empty.plan, empty.applied) == (ReleaseState.SUCCEEDED, [], 0)
    assert empty.summary == "nothing to do: no migrations were pending"


def test_two_concurrent_releases_one_migrates_the_other_waits_then_reports() -> None:
    probe_at("0002")
    Switch.objects.create(name="hold")  # the probe's 0004 waits until this is gone
    first = release_start(version="conc-a", requester=Requester.cli("test")).release
    second = release_start(version="conc-b", requester=Requester.cli("test")).release

    def one_waiting() -> Release | None:
        for candidate in (first, second):
            if "waiting for the migration lock" in " ".join(log_of(candidate.task_id)):
                return candidate
        return None

    waiting = wait_until(one_waiting, timeout=60, message="one release to wait for the lock")
    assert isinstance(waiting, Release)
    migrating = second if waiting == first else first

    # Asking for the migrating release again follows it; --timeout gives up, the job goes on.
    with pytest.raises(CommandError, match="gave up waiting after 1s") as gave_up:
        release("--version", migrating.version, "--wait", "--timeout", "1")
    assert gave_up.value.returncode == 3
    assert Release.objects.get(pk=migrating.pk).state == ReleaseState.RUNNING

    Switch.objects.filter(name="hold").delete()
    migrated = release_finished(migrating.version)
    waited = release_finished(waiting.version)

    assert (migrated.state, migrated.applied) == (ReleaseState.SUCCEEDED, 3)
    assert migrated.plan == plan_of("0003_widget_colour", "0004_hold", "0005_fail")
    assert (waited.state, waited.plan, waited.applied) == (ReleaseState.SUCCEEDED, [], 0)
    lines = log_of(waited.task_id)
    waited_at = next(i for i, line in enumerate(lines) if line.startswith("waiting for"))
    assert "held by PostgreSQL backend pid" in lines[waited_at]
    assert lines.index("migration lock acquired") > waited_at
    assert lines.index("nothing to do: no migrations are pending") > waited_at
    assert MigrationRecorder.Migration.objects.filter(app=PROBE).count() == 5


def test_failing_migration_fails_the_release_with_its_error_and_wait_exits_non_zero() -> None:
    probe_at("0002")
    Switch.objects.create(name="fail")
    out = StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("release", "--version", "broken-1", "--wait", "--timeout", "120", stdout=out)

    error = (
        "release_probe.0005_fail failed: RuntimeError: probe migration 0005 fails on purpose "
        "(2 of 3 applied before it)"
    )
    assert str(failed.value) == f"release broken-1 failed: {error}"
    assert failed.value.returncode == 1
    assert f"!! {error}" in out.getvalue()
    record = Release.objects.get(version="broken-1")
    assert (record.state, record.error, record.applied) == (ReleaseState.FAILED, error, 2)
    job_status(record.task_id, "FAILURE")
    result = TaskResult.objects.get(task_id=record.task_id)
    assert "ReleaseFailed: release broken-1 failed" in result.traceback
    assert probe_applied() == PROBE_MIGRATIONS[:4]

    # Fixed, the same release runs again: a new attempt; the failed one's job stays listed.
    Switch.objects.filter(name="fail").delete()
    again = release("--version", "broken-1", "--wait", "--timeout", "120")
    record.refresh_from_db()
    assert f"release broken-1: queued again as job {record.task_id}" in again
    assert record.previous_task_ids == [result.task_id]
    assert (record.state, record.attempts, record.error) == (ReleaseState.SUCCEEDED, 2, "")
    assert record.plan == plan_of("0005_fail")
    assert probe_applied() == PROBE_MIGRATIONS


def test_migration_blocked_by_a_table_lock_fails_on_lock_timeout_instead_of_hanging() -> None:
    probe_at("0002")
    with other_session(autocommit=False) as other:
        # An open transaction that read the table: ALTER TABLE must wait for it to end.
        other.execute("SELECT count(*) FROM release_probe_widget")
        release_start(version="blocked-1", requester=Requester.cli("test"))
        record = release_finished("blocked-1", timeout=90)
        other.rollback()

    assert record.state == ReleaseState.FAILED
    assert record.error.startswith("release_probe.0003_widget_colour failed: OperationalError:")
    assert "lock timeout" in record.error
    assert f"RELEASE_DB_LOCK_TIMEOUT ({settings.RELEASE_DB_LOCK_TIMEOUT})" in record.error
    assert "(0 of 3 applied before it)" in record.error
    assert probe_applied() == PROBE_MIGRATIONS[:2]
    job_status(record.task_id, "FAILURE")


def test_backward_incompatible_migration_is_refused_unless_allowed_for_that_release() -> None:
    probe_at("0001")  # pending: 0002 drops a column the running code still selects

    with pytest.raises(CommandError, match="refused 1 backward-incompatible operation"):
        release("--version", "drop-1", "--wait", "--timeout", "120")
    refused = Release.objects.get(version="drop-1")
    assert (refused.state, refused.applied, refused.allow_unsafe) == (
        ReleaseState.FAILED,
        0,
        False,
    )
    assert refused.unsafe_findings == [
        {
            "migration": "release_probe.0002_remove_widget_legacy_code",
            "operation": "Remove field legacy_code from widget",
            "reason": "drops a column the running code still selects",
        }
    ]
    assert probe_applied() == PROBE_MIGRATIONS[:1]

    out = release("--version", "drop-2", "--allow-unsafe", "--wait", "--timeout", "120")
    assert "allowed for this release (--allow-unsafe)" in out
    allowed = Release.objects.get(version="drop-2")
    assert (allowed.state, allowed.applied, allowed.allow_unsafe) == (
        ReleaseState.SUCCEEDED,
        4,
        True,
    )
    assert allowed.unsafe_findings == refused.unsafe_findings
    assert probe_applied() == PROBE_MIGRATIONS


def test_a_job_queued_under_the_tasks_former_name_still_runs_its_release() -> None:
    """A message sent before the task was renamed (release_migrate → release_execute) goes
    to the release queue and runs the release, as one sent under the new name does."""
    from workers.celery import app

    probe_at("0004")
    with transaction.atomic():
        record = Release.objects.create(
            version="old-name-1",
            requester_kind=RequesterKind.CLI,
            requester_label="test",
            task_id=new_task_id(),
        )
        job_enqueue(
            app.tasks["infra_tasks.releases.tasks.release_migrate"],
            requester=Requester.cli("test"),
            args=[record.pk],
            task_id=record.task_id,
        )

    record = release_finished("old-name-1")
    assert (record.state, record.applied) == (ReleaseState.SUCCEEDED, 1)
    assert Job.objects.get(task_id=record.task_id).queue == "release"
    job_status(record.task_id, "SUCCESS")
    assert probe_applied() == PROBE_MIGRATIONS
