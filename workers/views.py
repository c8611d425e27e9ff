"""Job views used by the admin pages: live log, log download, diagnostic trigger."""

from __future__ import annotations

from django.contrib import messages
from django.db import connection
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponsePermanentRedirect,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.templatetags.static import static
from django.urls import reverse
from django.utils.html import format_html
from django.views.decorators.http import require_GET, require_POST

from workers import display, job_actions, selectors
from workers.admin_links import operations_url_for, started_job_link, started_job_redirect
from workers.enqueue import BrokerUnavailable, JobArgumentsRefused, JobQueueRefused, Requester
from workers.jobs import DIAGNOSTIC_RUN_EXECUTE
from workers.permissions import (
    job_page_permission_required,
    job_permission_required,
    page_login_required,
    staff_permission_required,
)
from workers.recurring import RunNowRefused, recurring_task_run_now
from workers.services import diagnostic_run_start

FINISHED = display.FINISHED_STATES


@require_GET
@job_permission_required
def job_log(request: HttpRequest, task_id: str) -> HttpResponse:
    """Log lines after `since`, with the job's state: what the admin page polls."""
    try:
        since = int(request.GET.get("since", "0"))
    except ValueError:
        return HttpResponseBadRequest("since must be a line number")
    if since < 0:
        return HttpResponseBadRequest("since must be a line number")
    log = selectors.job_log_since(task_id=task_id, since=since)
    summary = selectors.job_summary_get(task_id=task_id)
    status = summary.status if summary else "UNKNOWN"
    return JsonResponse(
        {
            "lines": log.lines,
            "next": log.next_line,
            # The answer was cut to its size budget: ask again at once.
            "more": log.more,
            "status": status,
            "worker": summary.worker if summary else None,
            "finished": status in FINISHED,
            "result": summary.result if summary else None,
            "error": summary.error if summary else None,
            "progress": (
                {"done": summary.progress_done or 0, "total": summary.progress_total}
                if summary and summary.progress_total
                else None
            ),
            # The page's summary, drawn by the same template as at page load.
            "summary_html": render_to_string(
                "workers/job_summary.html",
                {"s": summary, "ops_url": operations_url_for(request.user)},
                request=request,
            ),
        }
    )


@require_GET
@page_login_required
@job_permission_required
def job_log_download(request: HttpRequest, task_id: str) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        selectors.job_log_iter_text(task_id=task_id), content_type="text/plain; charset=utf-8"
    )
    response["Content-Disposition"] = f'attachment; filename="job-{task_id}.log"'
    return response


@require_POST
@staff_permission_required("workers.run_diagnostic")
def diagnostic_trigger(request: HttpRequest) -> HttpResponse:
    fail = request.POST.get("fail") == "1"
    try:
        run = diagnostic_run_start(requester=Requester.for_user(request.user), fail=fail)
    except BrokerUnavailable as exc:
        # Back to the Jobs home, where the button is (the job list may refuse them).
        messages.error(request, str(exc))
        return redirect("admin:index")
    messages.success(
        request,
        format_html(
            "{} diagnostic job queued: {}.",
            "Failing" if fail else "A",
            started_job_link(
                request.user,
                run.task_id,
                f"job {run.task_id}",
                task_name=DIAGNOSTIC_RUN_EXECUTE.name,
            ),
        ),
    )
    return started_job_redirect(request.user, run.task_id, task_name=DIAGNOSTIC_RUN_EXECUTE.name)


@require_POST
@job_permission_required
def job_retry(request: HttpRequest, task_id: str) -> HttpResponse:
    """Run a failed or lost job again (the service checks the family's permission and rule)."""
    try:
        new_task_id = job_actions.job_retry(task_id=task_id, user=request.user)
    except (job_actions.JobActionRefused, BrokerUnavailable) as exc:
        messages.error(request, f"Not retried: {exc}")
        return redirect("workers:job-detail", task_id)
    url = reverse("workers:job-detail", args=[new_task_id])
    messages.success(
        request, format_html('Queued again as <a href="{}">job {}</a>.', url, new_task_id)
    )
    return redirect(url)


@require_POST
@job_permission_required
def job_discard(request: HttpRequest, task_id: str) -> HttpResponse:
    outcome = job_actions.jobs_discard(task_ids=[task_id], user=request.user)
    if outcome.done:
        messages.success(request, "Discarded: the record stays, and it is not offered for retry.")
    else:
        messages.error(request, f"Not discarded: {', '.join(outcome.refused)}.")
    return redirect("workers:job-detail", task_id)


@require_POST
@staff_permission_required("workers.run_recurring_now")
def recurring_run_now(request: HttpRequest, periodic_task_id: int) -> HttpResponse:
    try:
        task_id = recurring_task_run_now(periodic_task_id=periodic_task_id, user=request.user)
    except (RunNowRefused, JobArgumentsRefused, JobQueueRefused, BrokerUnavailable) as exc:
        messages.error(request, f"Not run: {exc}")
        return redirect("admin:index")
    messages.success(
        request,
        format_html("Queued now: {}.", started_job_link(request.user, task_id, f"job {task_id}")),
    )
    return started_job_redirect(request.user, task_id)


@require_GET
@page_login_required
@job_page_permission_required
def job_detail(request: HttpRequest, task_id: str) -> HttpResponse:
    """Stable link to a job's admin page by task id."""
    result = selectors.task_result_get(task_id=task_id)
    if result is None:
        messages.warning(request, f"No job {task_id}: it expired or never reached the queue.")
        return redirect("admin:django_celery_results_taskresult_changelist")
    return redirect("admin:django_celery_results_taskresult_change", result.pk)


def healthz(request: HttpRequest) -> HttpResponse:
    """Load balancer health check: the process answers and the database does too."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:  # any database failure means unhealthy
        return JsonResponse({"status": "unhealthy", "database": exc.__class__.__name__}, status=503)
    return JsonResponse({"status": "ok"})


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    """Browsers ask every site for /favicon.ico: without an answer each page logs a 404."""
    return HttpResponsePermanentRedirect(static("workers/favicon.svg"))
