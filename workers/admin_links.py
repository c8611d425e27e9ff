"""What every admin shows of its jobs: a link to a job's live page, and a refusal reported
to the person who clicked (one helper, so every admin says it the same way)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from workers import selectors
from workers.errors import ApplicationError
from workers.families import VIEW_JOBS, job_viewable
from workers.requesters import current_request

NO_JOB = "—"


def operations_url_for(user: Any) -> str:
    """The operations page's address for whom may open it, else "" (no link to a 403)."""
    if user is not None and user.has_perm("workers.view_operations"):
        return reverse("workers:operations")
    return ""


def job_url(task_id: str) -> str:
    return reverse("workers:job-detail", args=[task_id])


def job_link(task_id: str | None, label: str | None = None) -> SafeString | str:
    """`<a>` to the job's page, labelled with its id unless told; a dash when there is none.
    Plain text for a person who may not open job pages at all (it would answer 403)."""
    if not task_id:
        return NO_JOB
    if not may_open_jobs():
        return label or task_id
    return format_html('<a href="{}">{}</a>', job_url(task_id), label or task_id)


def job_links(task_ids: Iterable[str], *, separator: str = ", ") -> SafeString | str:
    ids = [task_id for task_id in task_ids if task_id]
    if not ids:
        return NO_JOB
    if not may_open_jobs():
        return separator.join(ids)
    return format_html_join(
        separator, '<a href="{}">{}</a>', ((job_url(task_id), task_id) for task_id in ids)
    )


def started_job_link(
    user: Any, task_id: str, label: str | None = None, *, task_name: str | None = None
) -> SafeString | str:
    """The link to a job `user` just started, in the message that says so: plain text when
    its page would refuse them. Starting a job needs its family's operate permission, opening
    it the jobs' and the family's view permissions (workers/families.py); one does not bring
    the other. A caller that knows the job's task passes `task_name`, saving the lookup."""
    if not _started_job_viewable(user, task_id, task_name):
        return label or task_id
    return format_html('<a href="{}">{}</a>', job_url(task_id), label or task_id)


def started_job_redirect(
    user: Any, task_id: str, fallback: str, *, task_name: str | None = None
) -> HttpResponseRedirect:
    """After starting a job: to its page if `user` may open it, else to the `fallback` URL,
    where the message says what was queued (sent to the job's page, they met a 403)."""
    if _started_job_viewable(user, task_id, task_name):
        return HttpResponseRedirect(job_url(task_id))
    return HttpResponseRedirect(fallback)


def _started_job_viewable(user: Any, task_id: str, task_name: str | None) -> bool:
    # Looking the task up by id is a query; the diagnostic trigger made two per request
    # (a third of its time in bench/dispatch.py) to learn a name it already knew.
    return job_viewable(user, task_name or selectors.job_task_name(task_id=task_id))


def may_open_jobs() -> bool:
    """Whether the person being served may open job pages at all (the jobs' own view
    permission; the family's is theirs on the family's own pages). Outside a request, e.g.
    a message a service builds for a command, links are made."""
    request = current_request()
    user = getattr(request, "user", None)
    return user is None or bool(user.has_perm(VIEW_JOBS))


def refusal_report(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    error: ApplicationError,
    *,
    subject: object = None,
) -> None:
    """Tell the person why nothing was done (`subject`: what it was done to, if several)."""
    text = f"{subject}: {error}" if subject is not None else str(error)
    model_admin.message_user(request, text, messages.ERROR)
