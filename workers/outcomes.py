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

After an `Ignore` Celery sends no event either, so Flower went on showing such a job as
STARTED, with a Terminate button, for good. The `Ignore` raised here (`JobEnded`) says how
the job ended, and the worker's request (`JobRequest`, every task's `Request`) sends the
event Celery sends for that end (`task-failed`, `task-revoked`) through the worker's own
event dispatcher, the one that sent `task-started`.
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import states
from celery.exceptions import Ignore
from celery.worker.request import Request
from kombu.utils.encoding import safe_repr


class JobFailed(Exception):
    """The job's record ended failed; the message says why."""


class JobEnded(Ignore):
    """The task stored its job's end itself (FAILURE or REVOKED, with `reason`). Plain
    arguments only: in a prefork worker it travels back to the worker's main process."""

    def __init__(self, state: str, reason: str) -> None:
        super().__init__(state, reason)
        self.state = state
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


def job_failed(task: Any, reason: Exception | str) -> NoReturn:
    """Record the running job as FAILURE with `reason` (its type and message, as Celery
    stores any failure), the traceback left empty, and end the task."""
    exc = reason if isinstance(reason, Exception) else JobFailed(reason)
    task.update_state(state=states.FAILURE, meta=exc)
    # As Celery's own task-failed event says the exception.
    raise JobEnded(states.FAILURE, safe_repr(exc))


def job_cancelled(task: Any, reason: str) -> NoReturn:
    """Record the running job as REVOKED with `reason`, and end the task."""
    task.backend.mark_as_revoked(task.request.id, reason, request=task.request)
    raise JobEnded(states.REVOKED, reason)


class JobRequest(Request):
    """Celery's worker request, which also sends the event of a job that ended through
    `job_failed` or `job_cancelled`. Runs in the worker's main process."""

    def on_failure(
        self, exc_info: Any, send_failed_event: bool = True, return_ok: bool = False
    ) -> Any:
        exc = getattr(exc_info.exception, "exc", exc_info.exception)  # ExceptionWithTraceback
        if isinstance(exc, JobEnded):
            if exc.state == states.FAILURE:
                self.send_event("task-failed", exception=exc.reason, traceback="")
            else:
                self.send_event("task-revoked", terminated=False, signum=None, expired=False)
        return super().on_failure(
            exc_info, send_failed_event=send_failed_event, return_ok=return_ok
        )
