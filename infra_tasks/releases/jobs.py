"""The release job (registry: workers/job_registry.py): one release's migrations, on the
`release` queue, the one place that migrates."""

from __future__ import annotations

from workers.job_registry import job_spec

RELEASE_EXECUTE = job_spec(
    "infra_tasks.releases.tasks.release_execute",
    queue="release",
    old_names=("infra_tasks.releases.tasks.release_migrate",),
)
