"""`manage.py release --run-here`: a release run in the calling process, recorded as a job.

The same `migrations_run` as the worker's, under the same lock, for the one moment no worker
can: a database whose record tables do not exist yet. The records a worker's run would
leave (Job, TaskResult on queue "in-process", the log) are written through
workers/bookkeeping.py once the tables exist (see `release_run_here`).
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from celery import states
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.utils import timezone

from infra_tasks.releases.jobs import RELEASE_EXECUTE
from infra_tasks.releases.locking import migration_lock
from infra_tasks.releases.models import Release, ReleaseState
from infra_tasks.releases.selectors import migration_plan_pending, plan_touches_records
from infra_tasks.releases.services.migrate import (
    Outcome,
    ReleaseFailed,
    migrations_run,
    release_plan_record,
    release_record_outcome,
    release_result,
)
from infra_tasks.releases.services.start import (
    ReleaseRefused,
    StartStatus,
    release_fail_if_job_died,
    release_reset_for_retry,
    requested_by,
    version_validate,
)
from workers.bookkeeping import job_finish, job_record_in_process
from workers.enqueue import Requester, new_task_id
from workers.errors import job_failure
from workers.joblog import JobLogWriter
from workers.logsink import LogSink
from workers.models import requester_text


@dataclass(frozen=True)
class RunHereResult:
    status: StartStatus
    outcome: Outcome | None
    release: Release | None


def release_run_here(
    *,
    version: str,
    requester: Requester,
    allow_unsafe: bool = False,
    echo: Callable[[str], object],
) -> RunHereResult:
    """Run release `version` in this process, under the same lock, recorded the same way.

    This is for bootstrapping: on a fresh database (or one whose record tables themselves have
    pending migrations) no release record, job or log can be written and no worker can be
    trusted with the job, because the worker processes write to those tables and, in the dev
    stack, start only after this runs. So the plan is applied here, under the migration lock,
    with its output kept in memory (and echoed); once the record tables exist the release, its
    Job/TaskResult (queue "in-process") and its log are written from what was kept. When the
    record tables are already up to date this is simply the worker's path run in-process.
    """
    version_validate(version)
    connection = connections[DEFAULT_DB_ALIAS]
    with migration_lock(
        connection, wait_seconds=settings.RELEASE_LOCK_WAIT_SECONDS, on_wait=_echo_line(echo)
    ):
        if plan_touches_records(migration_plan_pending(connection=connection)):
            return _bootstrap_here(
                connection,
                version=version,
                requester=requester,
                allow_unsafe=allow_unsafe,
                echo=echo,
            )
        return _recorded_here(
            connection, version=version, requester=requester, allow_unsafe=allow_unsafe, echo=echo
        )


def _recorded_here(
    connection: BaseDatabaseWrapper,
    *,
    version: str,
    requester: Requester,
    allow_unsafe: bool,
    echo: Callable[[str], object],
) -> RunHereResult:
    with transaction.atomic():
        release, created = Release.objects.select_for_update().get_or_create(
            version=version, defaults=requested_by(requester, allow_unsafe=allow_unsafe)
        )
        if not created:
            release_fail_if_job_died(release)
            if release.state == ReleaseState.SUCCEEDED:
                return RunHereResult(StartStatus.ALREADY_SUCCEEDED, None, release)
            if release.state != ReleaseState.FAILED:
                raise ReleaseRefused(
                    f"release {version} is already {release.state} as job {release.task_id}; "
                    "follow it with --wait instead of running it here"
                )
            release_reset_for_retry(release, requester=requester, allow_unsafe=allow_unsafe)
        task_id = _record_job_here(release, requester=requester)

    with JobLogWriter(task_id) as job_log:
        log = _Tee(job_log, echo)
        log.line(f"release {version}, requested by {release.requester}, running in-process")
        outcome = migrations_run(
            connection,
            log=log,
            allow_unsafe=allow_unsafe,
            on_plan=lambda plan, findings: release_plan_record(release.pk, plan, findings),
        )
        log.line(("succeeded: " if outcome.succeeded else "FAILED: ") + outcome.summary)
    release = release_record_outcome(release_id=release.pk, outcome=outcome)
    _finish_job_here(release, outcome)
    return RunHereResult(
        StartStatus.RETRIED if not created else StartStatus.QUEUED, outcome, release
    )


def _bootstrap_here(
    connection: BaseDatabaseWrapper,
    *,
    version: str,
    requester: Requester,
    allow_unsafe: bool,
    echo: Callable[[str], object],
) -> RunHereResult:
    started_at = timezone.now()
    kept = _Kept(echo)
    who = requester_text(requester.kind, requester.label)
    kept.line(f"release {version}, requested by {who}, running in-process")
    kept.line("bootstrap: the release record tables are not up to date yet; output is kept")
    kept.line("in memory and recorded once the migrations below have created them")
    outcome = migrations_run(connection, log=kept, allow_unsafe=allow_unsafe)
    kept.line(("succeeded: " if outcome.succeeded else "FAILED: ") + outcome.summary)
    if plan_touches_records(migration_plan_pending(connection=connection)):
        # Failed before the record tables were complete: nowhere to record it but here.
        return RunHereResult(StartStatus.QUEUED, outcome, None)

    with transaction.atomic():
        release, created = Release.objects.select_for_update().get_or_create(
            version=version, defaults=requested_by(requester, allow_unsafe=allow_unsafe)
        )
        if created:
            # Recorded once its migrations had made the table: it was asked for when it began.
            Release.objects.filter(pk=release.pk).update(created_at=started_at)
            release.created_at = started_at
        else:
            release_reset_for_retry(release, requester=requester, allow_unsafe=allow_unsafe)
        task_id = _record_job_here(release, requester=requester, started_at=started_at)
        release_plan_record(release.pk, outcome.plan, outcome.findings)
    with JobLogWriter(task_id) as job_log:
        for text in kept.lines():
            job_log.line(text)
    release = release_record_outcome(release_id=release.pk, outcome=outcome)
    _finish_job_here(release, outcome)
    return RunHereResult(StartStatus.QUEUED, outcome, release)


def _record_job_here(
    release: Release, *, requester: Requester, started_at: datetime | None = None
) -> str:
    """The release's new attempt, and the Job and TaskResult a worker run would have."""
    task_id = new_task_id()
    release.task_id = task_id
    release.state = ReleaseState.RUNNING
    release.attempts += 1
    release.started_at = started_at or timezone.now()
    release.save()
    job_record_in_process(
        RELEASE_EXECUTE,
        task_id=task_id,
        args=[release.pk],
        requester=requester,
        started_at=release.started_at,
        worker=f"release --run-here@{socket.gethostname()}",
    )
    return task_id


def _finish_job_here(release: Release, outcome: Outcome) -> None:
    if outcome.succeeded:
        job_finish(task_id=release.task_id, status=states.SUCCESS, result=release_result(release))
        return
    job_finish(
        task_id=release.task_id,
        status=states.FAILURE,
        result=job_failure(ReleaseFailed.__name__, outcome.error, ReleaseFailed.__module__),
        traceback=f"ReleaseFailed: {outcome.error}\n(run in-process: no Python traceback)",
    )


class _Sink:
    """A LogSink's `line` and `write_block`, in terms of its `write`."""

    def write(self, text: str) -> None:
        raise NotImplementedError

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def write_block(self, text: str) -> None:
        self.write(text)


class _Tee(_Sink):
    """Writes to the job's log, echoed to the command's output."""

    def __init__(self, log: LogSink, echo: Callable[[str], object]) -> None:
        self.log = log
        self.echo = echo

    def write(self, text: str) -> None:
        self.log.write(text)
        self.echo(text)


class _Kept(_Sink):
    """Output kept in memory (and echoed) until there is a job log to write it to."""

    def __init__(self, echo: Callable[[str], object]) -> None:
        self.echo = echo
        self.parts: list[str] = []

    def write(self, text: str) -> None:
        self.parts.append(text)
        self.echo(text)

    def lines(self) -> list[str]:
        return "".join(self.parts).rstrip("\n").split("\n")


def _echo_line(echo: Callable[[str], object]) -> Callable[[str], object]:
    return lambda text: echo(text + "\n")
