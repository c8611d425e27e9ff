"""Record pages that show their job live: which is read first, and the fields the job's
summary already shows.

Such a page reloads once when its job ends while it is watched (`{% job_live …
reload_on_end=True %}`), because its buttons and the record's state follow from how the job
ended. A page that says the job had already ended when it was made is not reloaded, so it
must not show the record as it was before the job's end: the job is read before the record
(`LiveJobPageMixin`). Read the other way round, a plan that ended between the two reads left
the run page offering "Cancel the run" beside a plan job marked ended, and it stayed so.

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

from workers.families import job_viewable
from workers.selectors import JobSummary, job_summary_get

# Kept on the request: the records this admin page read, and the summaries read before them.
_RECORDS = "_opsqueue_live_records"
_SUMMARIES = "_opsqueue_live_summaries"


def job_summary_for_page(request: HttpRequest | None, task_id: str) -> JobSummary | None:
    """The job's summary as the page read it before its record, else read now."""
    early: dict[str, JobSummary | None] = getattr(request, _SUMMARIES, {})
    return early[task_id] if task_id in early else job_summary_get(task_id=task_id)


class LiveJobPageMixin:
    """An admin whose change page shows its record's job live, reloading when it ends."""

    def live_task_id(self, obj: Any) -> str:
        """The task id of the job the page shows live (override when not `task_id`)."""
        return str(obj.task_id or "")

    def get_object(self, request: HttpRequest, object_id: str, from_field: Any = None) -> Any:
        """The record, read after its job's summary; the same object for the whole request
        (the admin's change_view reads it, and so does Django's, which renders it)."""
        records = request.__dict__.setdefault(_RECORDS, {})
        key = (self.model, object_id, from_field)  # type: ignore[attr-defined]
        if key not in records:
            read = super().get_object  # type: ignore[misc]
            obj = read(request, object_id, from_field)
            task_id = self.live_task_id(obj) if obj is not None else ""
            if task_id:
                # The record told which job; the job is read, then the record again.
                summaries = request.__dict__.setdefault(_SUMMARIES, {})
                summaries[task_id] = job_summary_get(task_id=task_id)
                obj = read(request, object_id, from_field)
            records[key] = obj
        return records[key]


class LiveJobFieldsMixin(LiveJobPageMixin):
    live_fields: tuple[str, ...] = ()

    def get_fieldsets(self, request: HttpRequest, obj: Any = None) -> Any:
        fieldsets = super().get_fieldsets(request, obj)  # type: ignore[misc]
        task_id = self.live_task_id(obj) if obj is not None else ""
        # The summary get_object read before the record: no query of its own.
        summary = job_summary_for_page(request, task_id) if task_id else None
        # No job record, or one this person may not open (the live box then shows nothing
        # of it): the form's own fields say it all.
        if summary is None or not job_viewable(request.user, summary.task_name):
            return fieldsets
        return [
            (
                name,
                {**options, "fields": [f for f in options["fields"] if f not in self.live_fields]},
            )
            for name, options in fieldsets
        ]
