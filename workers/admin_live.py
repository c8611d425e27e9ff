"""Record pages that show their job live: the fields the job's summary already shows.

A terraform run, a database action or a release has a job whose live summary (state, the
record's own state and message, progress) sits at the top of the record's page and is
refreshed with the log. The same fields in the form below would be frozen at page load
and soon contradict it, so they are left out while the job's record exists; once it has
expired (job records are cleaned after JOB_RESULT_EXPIRES_DAYS), or for a person who may look
at the record but not at its job, the form shows them.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django_celery_results.models import TaskResult

from workers.families import job_viewable


class LiveJobFieldsMixin:
    live_fields: tuple[str, ...] = ()

    def live_task_id(self, obj: Any) -> str:
        """The task id of the job the page shows live (override when not `task_id`)."""
        return str(obj.task_id or "")

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        task_id = self.live_task_id(obj) if obj is not None else ""
        task_name = (
            TaskResult.objects.filter(task_id=task_id).values_list("task_name", flat=True).first()
            if task_id
            else None
        )
        # No job record, or one this person may not open (the live box then shows nothing
        # of it): the form's own fields say it all.
        if task_name is None or not job_viewable(request.user, task_name):
            return fieldsets
        return [
            (
                name,
                {**options, "fields": [f for f in options["fields"] if f not in self.live_fields]},
            )
            for name, options in fieldsets
        ]
