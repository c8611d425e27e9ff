"""Template tags of job pages: `{% job_live task_id %}` (a job's live summary and log, on any
page that shows a job) and the filters that write jobs' words and times as every page does."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import template
from django.utils.timesince import timesince

from workers.admin_links import operations_url_for
from workers.admin_live import job_summary_for_page
from workers.display import duration_text, state_label
from workers.families import job_viewable

register = template.Library()


@register.inclusion_tag("workers/job_live.html", takes_context=True)
def job_live(
    context: dict[str, Any],
    task_id: str,
    title: str = "Log",
    reload_on_end: bool = False,
    link_to_job: bool = True,
) -> dict[str, Any]:
    """The summary (state, worker, duration, result or error, progress, the record it is
    for) and the log, both refreshed while the job runs.

    `reload_on_end`: reload the page once when the job ends while it is watched, for pages
    whose other parts (buttons, the record's fields) follow from how the job ended.

    A person who may look at the record but not at its job (the job's family view permission
    and the jobs' own) gets a line saying so, not a box whose log and links answer 403.
    """
    request = context.get("request")
    summary = job_summary_for_page(request, task_id)
    # No record left (expired): the box says so, and there is nothing in it to withhold.
    viewable = summary is None or (
        request is not None and job_viewable(request.user, summary.task_name)
    )
    return {
        "viewable": viewable,
        "task_id": task_id,
        "title": title,
        "summary": summary if viewable else None,
        "reload_on_end": reload_on_end,
        "link_to_job": link_to_job,
        "ops_url": operations_url_for(request.user if request is not None else None),
    }


@register.filter
def may_view_job(user: Any, task_name: str | None) -> bool:
    """`{% if request.user|may_view_job:task_name %}`: link a job only for who may open it."""
    return job_viewable(user, task_name)


@register.filter
def duration(seconds: float | None) -> str:
    """`{{ seconds|duration }}`: as the job list and pages write it ('< 0.1 s', '3 min 04 s')."""
    return duration_text(seconds)


@register.filter(name="state_label")
def state_label_filter(status: str) -> str:
    """`{{ status|state_label }}`: 'Queued (PENDING)', as the job list and pages say it."""
    return state_label(status)


@register.filter
def ago(moment: datetime | None, now: datetime) -> str:
    """`{{ moment|ago:now }}`: '3 minutes ago', and 'just now' within the minute (Django's
    timesince alone wrote '0 minutes ago')."""
    if moment is None:
        return ""
    if (now - moment).total_seconds() < 60:
        return "just now"
    return f"{timesince(moment, now)} ago"
