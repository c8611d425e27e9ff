"""The release job (name and queue: jobs.py): take the release id, call the service."""

from __future__ import annotations

from typing import Any

from infra_tasks.releases import jobs, services
from workers.job_registry import job_task


@job_task(jobs.RELEASE_EXECUTE)
def release_execute(self: Any, release_id: int) -> dict[str, Any] | None:
    return services.release_execute(release_id=release_id, task_id=self.request.id)
