"""One base for the errors a person is shown: a refusal or a failure the service expected.

Every app's own errors derive from `ApplicationError` (`RunError`, `ReleaseRefused`,
`ActionRefused`, `CatalogueError`, …), so an admin action catches one class and reports
its message (`workers.admin_links.action_report`); anything else is a bug and goes to the
error log with its traceback.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """An outcome to tell the user in plain words; `str(error)` is that message."""

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(message, *args)
        self.message = message

    def __str__(self) -> str:
        return self.message or super().__str__()


def job_failure(exc_type: str, message: str, exc_module: str = "builtins") -> dict[str, Any]:
    """A failure as Celery's result backend stores an exception: the job page shows
    `exc_type: message`, and Django's Tasks API the class path. Here, below the outbox and
    the bookkeeping that imports it, so that both store their failures through it."""
    return {"exc_type": exc_type, "exc_message": [message], "exc_module": exc_module}
