"""A release requested: validate the version, record the release, queue its job.

The deploy pipeline (`manage.py release`) and the admin call `release_start`, which records
the release and queues `RELEASE_EXECUTE` on the `release` queue, once per version: a
version that succeeded or is under way is not started again, a failed one is retried as a
new attempt. The record rules here (who asked, a retry's reset, a job that died) are shared
with the in-process path (run_here.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from celery import states
from django.db import transaction
from django.utils import timezone
from django_celery_results.models import TaskResult

from infra_tasks.releases.jobs import RELEASE_EXECUTE
from infra_tasks.releases.models import FINISHED_STATES, Release, ReleaseState
from infra_tasks.releases.selectors import migration_plan_pending, plan_touches_records
from workers.enqueue import Requester, job_enqueue, new_task_id
from workers.errors import ApplicationError

VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/@-]{0,99}")


class ReleaseRefused(ApplicationError):
    """The release cannot be started as asked; the message says why."""


class StartStatus(StrEnum):
    QUEUED = "queued"
    RETRIED = "retried"
    IN_PROGRESS = "in progress"
    ALREADY_SUCCEEDED = "already succeeded"


@dataclass(frozen=True)
class ReleaseStart:
    release: Release
    status: StartStatus


def version_validate(version: str) -> None:
    if not VERSION_PATTERN.fullmatch(version):
        raise ReleaseRefused(
            f"{version!r} is not a release version: use up to 100 letters, digits and . _ : + / @ -"
            ", starting with a letter or digit"
        )


@transaction.atomic
def release_start(
    *, version: str, requester: Requester, allow_unsafe: bool = False
) -> ReleaseStart:
    """Record release `version` and queue its migration job, unless that needs no doing."""
    version_validate(version)
    if plan_touches_records(migration_plan_pending()):
        raise ReleaseRefused(
            "this database cannot hold release records yet: migrations of the release, job or "
            "result tables are pending, and a queued job records itself in them. Bootstrap it "
            f"with `manage.py release --version {version} --run-here`."
        )
    release, created = Release.objects.select_for_update().get_or_create(
        version=version, defaults=requested_by(requester, allow_unsafe=allow_unsafe)
    )
    if not created:
        release_fail_if_job_died(release)
        if release.state == ReleaseState.SUCCEEDED:
            return ReleaseStart(release, StartStatus.ALREADY_SUCCEEDED)
        if release.state != ReleaseState.FAILED:
            return ReleaseStart(release, StartStatus.IN_PROGRESS)
        release_reset_for_retry(release, requester=requester, allow_unsafe=allow_unsafe)
    # If the broker is down job_enqueue raises here and this transaction, the new release
    # or its reset included, rolls back.
    release.task_id = new_task_id()
    release.save()
    job_enqueue(
        RELEASE_EXECUTE,
        requester=requester,
        args=[release.pk],
        audit_object=release,
        task_id=release.task_id,
    )
    return ReleaseStart(release, StartStatus.QUEUED if created else StartStatus.RETRIED)


def requested_by(requester: Requester, *, allow_unsafe: bool) -> dict[str, Any]:
    """A release's fields saying who asked for it, and whether unsafe migrations may run."""
    return {**requester.as_fields(), "allow_unsafe": allow_unsafe}


def release_reset_for_retry(release: Release, *, requester: Requester, allow_unsafe: bool) -> None:
    """A failed release asked for again: a new attempt; earlier jobs stay listed."""
    if release.task_id:
        release.previous_task_ids = [*release.previous_task_ids, release.task_id]
    for name, value in requested_by(requester, allow_unsafe=allow_unsafe).items():
        setattr(release, name, value)
    release.state = ReleaseState.QUEUED
    release.task_id = ""
    release.plan = None
    release.unsafe_findings = []
    release.applied = 0
    release.summary = release.error = ""
    release.started_at = release.finished_at = None


def release_fail_if_job_died(release: Release) -> None:
    """A release whose job ended without recording an outcome (killed at the hard time limit,
    revoked) would otherwise stay 'running' forever and block its own retry."""
    if release.state in FINISHED_STATES or not release.task_id:
        return
    status = (
        TaskResult.objects.filter(task_id=release.task_id).values_list("status", flat=True).first()
    )
    if status in (states.FAILURE, states.REVOKED):
        release.state = ReleaseState.FAILED
        release.error = f"its job {release.task_id} ended {status} without recording an outcome"
        release.summary = "the job died"
        release.finished_at = timezone.now()
        release.save(update_fields=["state", "error", "summary", "finished_at"])
