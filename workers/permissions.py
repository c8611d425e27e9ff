"""Access checks for job views: staff only, and a named permission; 403 for anyone else.

Pages a person opens by their address (a bookmark, a link in a message or a mail) send
whoever is not logged in to the admin's login first, which brings them back
(`page_login_required`); what a page polls and what is posted keep answering 403."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.urls import reverse_lazy

from workers import families, selectors

View = TypeVar("View", bound=Callable[..., HttpResponseBase])


def page_login_required(view: View) -> View:
    """Not logged in: the admin's login page, then back to this page (as the admin's own
    pages do), rather than a bare 403 that does not say what to do."""
    return cast(View, login_required(view, login_url=reverse_lazy("admin:login")))


def staff_permission_required(perm: str) -> Callable[[View], View]:
    def decorator(view: View) -> View:
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            user = request.user
            if not (user.is_active and user.is_staff and user.has_perm(perm)):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return cast(View, wrapped)

    return decorator


def job_permission_required(view: View) -> View:
    """For views of one job (`task_id`): the view permission of the job's family
    (workers/families.py), so a permission for one family's jobs opens no other's logs."""
    return _job_view_guarded(view, missing_job_told=False)


def job_page_permission_required(view: View) -> View:
    """`job_permission_required` for the job's page, where an id that names no job (a typo,
    an expired record) is no family's: whoever may look at jobs at all is let through to be
    told there is no such job, not refused as if it were another family's."""
    return _job_view_guarded(view, missing_job_told=True)


def _job_view_guarded(view: View, *, missing_job_told: bool) -> View:
    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        task_name = selectors.job_task_name(task_id=kwargs["task_id"])
        missing = missing_job_told and task_name is None and families.jobs_viewable(request.user)
        if not (missing or families.job_viewable(request.user, task_name)):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    return cast(View, wrapped)
