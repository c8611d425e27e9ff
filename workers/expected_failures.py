"""Ending a task as an expected failure: FAILURE with the reason, without a traceback.

A refused input (an upload that is not an image, say) is an outcome the user must read, not
a crash to debug: a stack trace on the job page only hides the one line that matters.
Celery stores the traceback of any exception that leaves a task, so the task records its
own FAILURE through the result backend (`update_state`, with the exception as the result:
type, message and module, as Celery stores any failure) and then raises `Ignore`, Celery's
supported way to end a task whose state was stored by hand. The message is acknowledged as
after any other outcome. Unexpected errors are not routed here and keep their traceback.
"""

from __future__ import annotations

from typing import Any, NoReturn

from celery import states
from celery.exceptions import Ignore


def task_fail_expected(task: Any, exc: Exception) -> NoReturn:
    """Record `exc` as `task`'s FAILURE result, traceback left empty, and end the task."""
    task.update_state(state=states.FAILURE, meta=exc)
    raise Ignore(str(exc))
