"""What every admin shows of its jobs and of other records: a link to a job's live page or to
a record's admin page only for whoever may open it (plain text otherwise), and a refusal
reported to the person who clicked (one helper, so every admin says it the same way)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.helpers import AdminReadonlyField
from django.contrib.admin.widgets import ForeignKeyRawIdWidget
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from workers import selectors
from workers.errors import ApplicationError
from workers.families import VIEW_JOBS, job_viewable, jobs_viewable
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
    Plain text for a person whose job page would answer 403: no permission for jobs, or none
    for this job's family (a divergence's corrective job is a database's, and a person may
    see divergences without seeing database actions)."""
    if not task_id:
        return NO_JOB
    if not may_open_job(task_id):
        return label or task_id
    return format_html('<a href="{}">{}</a>', job_url(task_id), label or task_id)


def job_links(task_ids: Iterable[str], *, separator: str = ", ") -> SafeString | str:
    ids = [task_id for task_id in task_ids if task_id]
    if not ids:
        return NO_JOB
    return format_html_join(separator, "{}", ((job_link(task_id),) for task_id in ids))


def started_job_link(
    user: Any, task_id: str, label: str | None = None, *, task_name: str | None = None
) -> SafeString | str:
    """The link to a job `user` just started, in the message that says so: plain text when
    its page would refuse them. Starting a job needs its family's operate permission, opening
    it the jobs' and the family's view permissions (workers/families.py); one does not bring
    the other. A caller that knows the job's task passes `task_name`, saving the lookup."""
    if not may_open_job(task_id, user=user, task_name=task_name):
        return label or task_id
    return format_html('<a href="{}">{}</a>', job_url(task_id), label or task_id)


def started_job_redirect(
    user: Any, task_id: str, *, fallback: str = "admin:index", task_name: str | None = None
) -> HttpResponseRedirect:
    """After starting a job: to its page if `user` may open it, else to `fallback` (by
    default Jobs home), where the message says what was queued (sent to the job's page,
    they met a 403). `fallback` is a URL or a URL's name, resolved only when it is used."""
    if may_open_job(task_id, user=user, task_name=task_name):
        return HttpResponseRedirect(job_url(task_id))
    return HttpResponseRedirect(resolve_url(fallback))


def may_open_jobs() -> bool:
    """Whether the person being served may open job pages at all (the jobs' own view
    permission; `may_open_job` asks for one job). Outside a request, e.g. a message a
    service builds for a command, links are made."""
    request = current_request()
    user = getattr(request, "user", None)
    return user is None or bool(user.has_perm(VIEW_JOBS))


def may_open_job(task_id: str, *, user: Any = None, task_name: str | None = None) -> bool:
    """Whether `user` (by default the person being served) may open this job's page
    (workers/permissions.py's rule: the jobs' view permission and the job's family's; a job
    with no record left opens for whoever may look at jobs, to say so). Outside a request,
    with no user given, links are made. The job's task is looked up by id unless the caller
    knows it (`task_name`): the diagnostic trigger looked its own job up twice per request,
    a third of its time in bench/dispatch.py."""
    request = current_request()
    if user is None:
        user = getattr(request, "user", None)
        if user is None:
            return True
    if not user.has_perm(VIEW_JOBS):
        return False
    if user.is_superuser:
        return True
    if task_name is None:
        task_name = _job_task_name(request, task_id)
    return jobs_viewable(user) if task_name is None else job_viewable(user, task_name)


def _job_task_name(request: Any, task_id: str) -> str | None:
    """The job's task, looked up once per request (a list shows a job per row)."""
    if request is None:
        return selectors.job_task_name(task_id=task_id)
    names: dict[str, str | None] = request.__dict__.setdefault("_job_task_names", {})
    if task_id not in names:
        names[task_id] = selectors.job_task_name(task_id=task_id)
    return names[task_id]


def admin_page_opens(model: Any, obj: Any = None, *, site: admin.AdminSite | None = None) -> bool:
    """Whether the person being served may open `model`'s admin pages (`obj`'s, if given)
    on `site` (the default one unless told): its admin's view or change permission.
    Outside a request, yes."""
    request = current_request()
    if request is None or getattr(request, "user", None) is None:
        return True
    model_admin = (site or admin.site)._registry.get(model)
    return model_admin is not None and bool(model_admin.has_view_or_change_permission(request, obj))


_django_raw_id_context = ForeignKeyRawIdWidget.get_context


def raw_id_widget_context(
    widget: ForeignKeyRawIdWidget, name: str, value: Any, attrs: dict[str, Any] | None
) -> dict[str, Any]:
    """A raw-id field on any admin's form (an enrolment's user): Django offers a lookup of
    the related records and links the chosen one's page without asking whether the reader
    may open them (an enrolment editor met a 403 at both); for whoever may not, the id is
    typed and the chosen record named, not linked. Installed by
    workers.apps.OpsqueueAdminConfig."""
    context: dict[str, Any] = _django_raw_id_context(widget, name, value, attrs)
    if not admin_page_opens(widget.rel.model, site=widget.admin_site):
        context["related_url"] = None
        context["link_url"] = ""
    return context


_django_readonly_admin_url = AdminReadonlyField.get_admin_url


def readonly_related_link(field: AdminReadonlyField, remote_field: Any, remote_obj: Any) -> str:
    """A read-only foreign key on any admin's page (the libraries' too): Django links the
    related record's page without asking whether the reader may open it (a course viewer
    met a 403 at a section's course, a database operator at its schedules); it is plain
    text for whoever may not. Installed by workers.apps.OpsqueueAdminConfig."""
    site = field.model_admin.admin_site if field.model_admin else None
    if not admin_page_opens(remote_field.model, remote_obj, site=site):
        return str(remote_obj)
    return _django_readonly_admin_url(field, remote_field, remote_obj)


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
