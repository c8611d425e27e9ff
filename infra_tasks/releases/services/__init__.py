"""Writes: starting a release, running its migrations under the lock, recording the outcome.

Two ways in, one way through. The deploy pipeline and the admin call `release_start`
(start.py), which records the release and queues `RELEASE_EXECUTE` on the `release` queue;
the worker calls `release_execute` (migrate.py). `release_run_here` (run_here.py) runs the
same `migrations_run` in the calling process under the same lock, for the one moment no
worker can: a database whose record tables do not exist yet.
"""

from infra_tasks.releases.services.migrate import (
    Outcome,
    ReleaseFailed,
    migrations_run,
    release_execute,
    release_record_outcome,
)
from infra_tasks.releases.services.run_here import RunHereResult, release_run_here
from infra_tasks.releases.services.start import (
    ReleaseRefused,
    ReleaseStart,
    StartStatus,
    release_start,
    version_validate,
)

__all__ = [
    "Outcome",
    "ReleaseFailed",
    "ReleaseRefused",
    "ReleaseStart",
    "RunHereResult",
    "StartStatus",
    "migrations_run",
    "release_execute",
    "release_record_outcome",
    "release_run_here",
    "release_start",
    "version_validate",
]
