"""How a task ends a job whose outcome is decided, not crashed into.

A task that returns normally ends SUCCESS, and an exception that escapes it ends FAILURE with
its traceback: right for a bug, wrong for an outcome the user must simply read. A refused
upload, or a terraform run that was cancelled or failed, ends its job here instead:

- `job_failed` records FAILURE with the reason and no traceback (a stack trace on the job
  page only hides the one line that matters);
- `job_cancelled` records REVOKED (what Celery calls a cancelled job, shown as "Cancelled").

Both store the state through the result backend and raise `Ignore`, Celery's supported way
to end a task whose state was stored by hand: nothing is stored over it, and the message is
acknowledged as after any other outcome.
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import states
from celery.exceptions import Ignore


class JobFailed(Exception):
    """The job's record ended failed; the message says why."""


def job_failed(task: Any, reason: Exception | str) -> NoReturn:
    """Record the running job as FAILURE with `reason` (its type and message, as Celery
    stores any failure), the traceback left empty, and end the task."""
    exc = reason if isinstance(reason, Exception) else JobFailed(reason)
    task.update_state(state=states.FAILURE, meta=exc)
    raise Ignore(str(exc))


def job_cancelled(task: Any, reason: str) -> NoReturn:
    """Record the running job as REVOKED with `reason`, and end the task."""
    task.backend.mark_as_revoked(task.request.id, reason, request=task.request)
    raise Ignore()
