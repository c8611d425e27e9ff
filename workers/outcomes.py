"""How a task ends a job whose outcome its domain record decides.

A task that returns normally ends SUCCESS. A terraform run that was cancelled or failed must
not read SUCCESS on its job: `job_cancelled` records the job as REVOKED (what Celery calls a
cancelled job, shown as "Cancelled" everywhere) with the reason, and `JobFailed` (listed in
the task's `throws`) records FAILURE with the record's message and no traceback noise.
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery.exceptions import Ignore


class JobFailed(Exception):
    """The job's record ended failed; the message says why."""


def job_cancelled(task: Any, reason: str) -> NoReturn:
    """Record the running job as REVOKED with `reason`, and end it without another state.

    Ignore acknowledges the message (acks_late) and stores nothing over the REVOKED result.
    """
    task.backend.mark_as_revoked(task.request.id, reason, request=task.request)
    raise Ignore()
