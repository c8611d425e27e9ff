"""`{% job_live task_id %}`: a job's live summary and log, on any page that shows a job."""

from __future__ import annotations

from typing import Any

from django import template

from workers.selectors import job_summary_get

register = template.Library()


@register.inclusion_tag("workers/job_live.html")
def job_live(
    task_id: str, title: str = "Log", reload_on_end: bool = False, link_to_job: bool = True
) -> dict[str, Any]:
    """The summary (state, worker, duration, result or error, progress, the record it is
    for) and the log, both refreshed while the job runs.

    `reload_on_end`: reload the page once when the job ends while it is watched, for pages
    whose other parts (buttons, the record's fields) follow from how the job ended.
    """
    return {
        "task_id": task_id,
        "title": title,
        "summary": job_summary_get(task_id=task_id),
        "reload_on_end": reload_on_end,
        "link_to_job": link_to_job,
    }
