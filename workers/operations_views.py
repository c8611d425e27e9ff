"""The operations page's views (its figures: workers/operations.py): the page, the dead-letter
buttons, pausing a queue, and the JSON figures for external monitoring."""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.contrib import admin, messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_POST

from workers.admin_links import started_job_link
from workers.dead_letters import (
    DeadLetterGone,
    DeadLetterRefused,
    Discarded,
    JobFate,
    dead_letter_discard,
    dead_letter_redrive,
    discard_refusal,
    redrive_refusal,
)
from workers.models import DeadLetterAction
from workers.monitoring import monitor_url, monitoring_health
from workers.operations import dead_letter_sections, metrics_get, operations_get
from workers.outbox import broker_health, missing_queue_note
from workers.permissions import page_login_required, staff_permission_required
from workers.queue_pauses import QueuePauseRefused, queue_pause, queue_resume
from workers.queues import QUEUES


@require_GET
@page_login_required
@staff_permission_required("workers.view_operations")
def operations_page(request: HttpRequest) -> HttpResponse:
    ops = operations_get()
    dead_letters = dead_letter_sections(ops.queues)
    may_manage = request.user.has_perm("workers.manage_dead_letters")
    # The page is built from the database, whose queue figures only stop while SQS is away
    # (their sampler is a job too): this says why.
    sqs_cause = broker_health.unreachable_cause() or broker_health.missing_queue_error()
    return render(
        request,
        "admin/workers/operations.html",
        {
            **admin.site.each_context(request),
            "title": "Operations",
            "ops": ops,
            "dead_letters": dead_letters,
            "can_manage_dead_letters": may_manage,
            # Redrive is offered only where it would be done.
            "redrivable": {
                letter.message_id
                for section in dead_letters
                for letter in section.letters
                if may_manage
                and redrive_refusal(
                    letter.task_name,
                    request.user,
                    job_ended=letter.job_state if letter.job_fate == JobFate.ENDED else None,
                )
                is None
            },
            # So is Discard: a job's message needs the family's act permission.
            "discardable": {
                letter.message_id
                for section in dead_letters
                for letter in section.letters
                if may_manage and discard_refusal(letter.task_name, request.user) is None
            },
            "heartbeat_seconds": settings.WORKER_HEARTBEAT_SECONDS,
            "stalled_seconds": settings.WORKER_CONSUMER_STALLED_SECONDS,
            "flower_url": settings.FLOWER_URL,
            "may_pause": request.user.has_perm("workers.pause_queue"),
            "sqs_unreachable": sqs_cause,
            "sqs_queue_missing": missing_queue_note(sqs_cause),
            "monitoring_unreachable": (
                monitoring_health.unreachable_cause() if monitor_url() else None
            ),
        },
    )


@require_POST
@staff_permission_required("workers.manage_dead_letters")
def dead_letter_act(request: HttpRequest, queue: str, message_id: str, action: str) -> HttpResponse:
    """Redrive or discard one dead letter (the buttons beside it on the operations page)."""
    if action not in ("redrive", "discard") or queue not in QUEUES:
        raise Http404
    act = dead_letter_redrive if action == "redrive" else dead_letter_discard
    try:
        done: DeadLetterAction | Discarded = act(
            queue=queue, message_id=message_id, user=request.user
        )
    except DeadLetterGone as exc:
        messages.warning(request, str(exc))
    except DeadLetterRefused as exc:
        messages.error(request, str(exc))
    except (BotoCoreError, ClientError) as exc:
        messages.error(request, f"SQS refused: {exc}")
    else:
        messages.success(request, _act_message(request, queue, done))
    return HttpResponseRedirect(reverse("workers:operations") + "#dead-letters")


def _act_message(
    request: HttpRequest, queue: str, done: DeadLetterAction | Discarded
) -> SafeString:
    """What the person is told became of the message, and of its job."""
    record = done.action if isinstance(done, Discarded) else done
    what: SafeString | str = "message"
    job: SafeString | str = ""
    if record.task_id:
        job = started_job_link(
            request.user, record.task_id, f"{record.task_name} [{record.task_id}]"
        )
        what = format_html("job {}", job)
    if not isinstance(done, Discarded):
        return format_html("The {} was sent back to the {} queue.", what, queue)
    if done.job_fate == JobFate.RUNNING:
        # SQS moved a copy while the job ran (its message not extended): only the copy goes.
        return format_html(
            "The message of job {} was discarded from the {} dead-letter queue; the job is "
            "running and was left alone.",
            job,
            queue,
        )
    if done.job_fate == JobFate.ENDED:
        return format_html(
            "The message of job {} was discarded from the {} dead-letter queue; the job had "
            "ended ({}) and was left as it was.",
            job,
            queue,
            done.job_state,
        )
    return format_html(
        "The {} was discarded from the {} dead-letter queue{}.",
        what,
        queue,
        ": it will not run" if record.task_id else "",
    )


@require_POST
@staff_permission_required("workers.pause_queue")
def queue_pause_toggle(request: HttpRequest, queue: str, pause: bool) -> HttpResponse:
    """Pause or resume a queue for every worker (workers/queue_pauses.py); audited."""
    try:
        if pause:
            queue_pause(queue=queue, user=request.user)
            messages.success(
                request,
                f"Queue {queue} paused: workers stop taking its jobs within "
                f"{settings.QUEUE_PAUSE_CHECK_SECONDS:g} s; jobs sent to it wait.",
            )
        else:
            queue_resume(queue=queue, user=request.user)
            messages.success(request, f"Queue {queue} resumed: its waiting jobs run now.")
    except QueuePauseRefused as exc:
        messages.error(request, str(exc))
    return redirect("workers:operations")


@require_GET
@staff_permission_required("workers.view_operations")
def metrics_json(request: HttpRequest) -> JsonResponse:
    """Read-only figures for external monitoring: staff with the operations view permission."""
    return JsonResponse(metrics_get())
