"""The job list's actions on many jobs: retry, discard, delete old records.

Each asks first, on a page that counts what the selection (or, with "select all", every job
matching the filter) holds and how many of those the action will touch; nothing happens
until that page is confirmed. A confirmation handles at most job_actions.BATCH_SIZE jobs,
oldest first, so a request stays short; when more remain, the page comes back with the
count left. The services check permissions and write the audit entries.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django_celery_results.models import TaskResult

from workers import job_actions
from workers.admin_links import started_job_link
from workers.enqueue import BrokerUnavailable

# Counting stops here: "more than 10,000" is all a person needs to decide.
COUNT_CAP = 10_000
# New jobs a bulk retry's message links by name; the rest are counted.
LINKED_JOBS = 10


def capped_count(queryset: QuerySet[Any]) -> int:
    return int(queryset.order_by().values("pk")[: COUNT_CAP + 1].count())


def bulk_count_sentence(*, to_do: int, matching: int, across: bool, verb: str) -> str:
    """What the confirmation will touch, in words that agree with the numbers: "The
    selected job will be discarded.", "All 3 selected jobs …", "2 of the 3 …; 1 is left
    alone." (it read "1 of the 1 selected jobs will be discarded")."""

    what = "jobs matching the filter" if across else "selected jobs"
    one = "job matching the filter" if across else "selected job"
    if matching > COUNT_CAP:
        if to_do > COUNT_CAP:
            return f"More than {COUNT_CAP:,} of the {what} will be {verb}."
        return f"{to_do:,} of the more than {COUNT_CAP:,} {what} will be {verb}."
    if matching == 1:
        return f"The {one} will be {verb}." if to_do else f"The {one} is left alone."
    if to_do == matching:
        return f"All {matching:,} {what} will be {verb}."
    if to_do == 0:
        return f"None of the {matching:,} {what} will be {verb}."
    sentence = f"{to_do:,} of the {matching:,} {what} will be {verb}"
    left = matching - to_do
    return f"{sentence}; {left} {'is' if left == 1 else 'are'} left alone."


def _records_gone(request: HttpRequest) -> int:
    """How many of the jobs ticked on the list have no record any more (deleted from
    another tab since): Django's action gets only the rows that still exist."""
    if request.POST.get("select_across") == "1":
        return 0
    selected = set(request.POST.getlist(helpers.ACTION_CHECKBOX_NAME))
    if not selected:
        return 0
    return len(selected) - TaskResult.objects.filter(pk__in=selected).count()


BulkService = Callable[..., job_actions.BulkOutcome]
Candidates = Callable[..., QuerySet[TaskResult]]


def run_bulk_action(
    model_admin: Any,
    request: HttpRequest,
    queryset: QuerySet[TaskResult],
    *,
    action: str,
    verb: str,
    command: str,
    explanation: str,
    candidates: Candidates,
    service: BulkService,
) -> TemplateResponse | None:
    chosen = candidates(queryset, user=request.user).order_by("date_created")
    if request.POST.get("post") == "yes":
        ids = list(chosen.values_list("task_id", flat=True)[: job_actions.BATCH_SIZE])
        # The rest of the batch: jobs picked that the action will leave alone, so the
        # service says why. Another tab may have acted on them since this page counted
        # them; without this, that tab's second confirmation said only "Retried: 0 jobs."
        others = list(
            queryset.exclude(pk__in=chosen.values("pk"))
            .order_by("date_created")
            .values_list("task_id", flat=True)[: job_actions.BATCH_SIZE - len(ids)]
        )
        try:
            outcome = service(task_ids=ids + others, user=request.user)
        except BrokerUnavailable as exc:
            model_admin.message_user(request, str(exc), messages.ERROR)
            return None
        done = len(outcome.done)
        said = f"{verb.capitalize()}: {done} {'job' if done == 1 else 'jobs'}"
        if outcome.queued and outcome.done:
            # The new jobs, linked, as every message that queues work links what it queued.
            shown = outcome.done[:LINKED_JOBS]
            links = format_html_join(
                ", ", "{}", ((started_job_link(request.user, task_id),) for task_id in shown)
            )
            more = f" and {done - len(shown)} more" if done > len(shown) else ""
            message = format_html("{}, as {}{}.", said, links, more)
        else:
            message = format_html("{}.", said)
        model_admin.message_user(request, message, messages.SUCCESS)
        gone = _records_gone(request)
        if gone:
            outcome.refused["no record of it any more"] += gone
        for reason, count in outcome.refused.items():
            model_admin.message_user(request, f"{count} left alone: {reason}", messages.WARNING)
        if outcome.stopped:
            model_admin.message_user(request, outcome.stopped, messages.ERROR)
            return None
        if not outcome.done or not chosen.exists():
            return None  # back to the list: all done
    matching = capped_count(queryset)
    to_do = capped_count(chosen)
    # Why the others are left alone, per reason: "2 of the 5 … ; 3 are left alone" did
    # not say that those had been retried already, or had succeeded. The first
    # BATCH_SIZE of them are looked at, as a confirmation acts on that many.
    left_alone = job_actions.jobs_left_alone(
        action=command,
        task_ids=queryset.exclude(pk__in=chosen.values("pk"))
        .order_by("date_created")
        .values_list("task_id", flat=True)[: job_actions.BATCH_SIZE],
        user=request.user,
    )
    if matching - to_do > job_actions.BATCH_SIZE:
        left_alone_note = f"Among the first {job_actions.BATCH_SIZE:,} of those left alone:"
    else:
        left_alone_note = ""
    context = {
        **model_admin.admin_site.each_context(request),
        "title": f"{command.capitalize()} the selected jobs?",
        "opts": model_admin.model._meta,
        "action": action,
        "verb": verb,
        "command": command,
        "explanation": explanation,
        "count_sentence": bulk_count_sentence(
            to_do=to_do,
            matching=matching,
            across=request.POST.get("select_across") == "1",
            verb=verb,
        ),
        "to_do": to_do,
        "left_alone": sorted(left_alone.items(), key=lambda item: (-item[1], item[0])),
        "left_alone_note": left_alone_note,
        "batch": job_actions.BATCH_SIZE,
        "across": request.POST.get("select_across") == "1",
        "selected": request.POST.getlist(helpers.ACTION_CHECKBOX_NAME),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/workers/taskresult/bulk_confirm.html", context)


@admin.action(description="Retry the selected failed or lost jobs", permissions=["act"])
def retry_jobs(model_admin: Any, request: HttpRequest, queryset: QuerySet[TaskResult]) -> Any:
    return run_bulk_action(
        model_admin,
        request,
        queryset,
        action="retry_jobs",
        verb="retried",
        command="retry",
        explanation="Each becomes a new job with the same arguments, requested by you. "
        "Jobs already retried or discarded, of families that are not retried (terraform "
        "applies), or that you may not act on or start, are left alone.",
        candidates=job_actions.retry_candidates,
        service=job_actions.jobs_retry,
    )


@admin.action(description="Discard the selected failed or lost jobs", permissions=["act"])
def discard_jobs(model_admin: Any, request: HttpRequest, queryset: QuerySet[TaskResult]) -> Any:
    return run_bulk_action(
        model_admin,
        request,
        queryset,
        action="discard_jobs",
        verb="discarded",
        command="discard",
        # Read after "The selected job …" as after "All 3 selected jobs …".
        explanation="Each record stays, marked as discarded by you, and is no longer "
        "offered for retry.",
        candidates=job_actions.discard_candidates,
        service=job_actions.jobs_discard,
    )


@admin.action(description="Delete the records of the selected old jobs", permissions=["act"])
def delete_old_jobs(model_admin: Any, request: HttpRequest, queryset: QuerySet[TaskResult]) -> Any:
    return run_bulk_action(
        model_admin,
        request,
        queryset,
        action="delete_old_jobs",
        verb="deleted",
        command="delete",
        explanation=f"Records and logs of finished jobs queued more than "
        f"{job_actions.DELETE_MIN_AGE.days} days ago are deleted; newer or unfinished "
        "ones are left alone. The admin history keeps who deleted which job.",
        candidates=job_actions.delete_candidates,
        service=job_actions.jobs_delete_old,
    )


JOB_BULK_ACTIONS = [retry_jobs, discard_jobs, delete_old_jobs]
