"""Job records beside django-celery-results' TaskResult.

TaskResult (keyed by task id) holds state, result and traceback. `Job` adds what Celery does
not know: who or what asked, on which queue, and progress. `JobLogChunk` holds the job's log
as append-only chunks, so storage grows linearly with output and a reader can ask for
"everything after line N" with one indexed query.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import F, Q


class RequesterKind(models.TextChoices):
    USER = "user", "User"
    CLI = "cli", "Command line"
    SCHEDULE = "schedule", "Schedule"
    SYSTEM = "system", "System"


def requester_text(kind: str, label: str) -> str:
    """Who asked, as every page says it: 'User: alice', 'Schedule: Record SQS queue depths'
    (a kind this code does not know is shown as stored)."""
    return f"{dict(RequesterKind.choices).get(kind, kind)}: {label}"


class RequesterFields(models.Model):
    """Who or what asked for a job, as every record of one keeps it (the job, a release, a
    terraform run, a database action): the same fields, the same words on every page."""

    requester_kind = models.CharField(max_length=16, choices=RequesterKind.choices)
    # Human-readable: a username, a command name or a schedule name. Kept even if the
    # user is deleted later, so the audit trail survives.
    requester_label = models.CharField(max_length=255)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        abstract = True

    @property
    def requester(self) -> str:
        return requester_text(self.requester_kind, self.requester_label)


# Acting on jobs (retry, discard, delete old records) is allowed per family: whoever may
# retry a diagnostic job need not be allowed to touch terraform's. workers/job_actions.py
# maps a family to its permission; the labels are display.FAMILIES'.
JOB_FAMILY_SLUGS = (
    ("diagnostic", "Diagnostic"),
    ("courses", "Courses"),
    ("terraform", "Terraform"),
    ("databases", "Databases"),
    ("releases", "Releases"),
    ("infrastructure", "Infrastructure"),
    ("system", "System"),
    ("other", "Other"),
)
JOB_ACTION_PERMISSIONS = [
    (f"act_on_{slug}_jobs", f"Can retry, discard and delete {label} jobs")
    for slug, label in JOB_FAMILY_SLUGS
]


class Job(RequesterFields):
    task_id = models.CharField(max_length=255, unique=True)
    task_name = models.CharField(max_length=255)
    queue = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    # Set when the message reached the broker; NULL means still in the outbox.
    sent_at = models.DateTimeField(null=True, blank=True)
    # The earliest the job may start (SQS delay, or a clocked beat entry beyond SQS's limit);
    # NULL: as soon as a worker is free.
    run_after = models.DateTimeField(null=True, blank=True)
    progress_done = models.PositiveIntegerField(null=True, blank=True)
    progress_total = models.PositiveIntegerField(null=True, blank=True)
    # Which delivery runs the job, and until when its lease holds (workers/claims.py).
    claimed_by = models.CharField(max_length=300, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    # A retry is a new job with the same arguments; each knows the other.
    retry_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries"
    )
    # Discarded: a person looked at this failed job and decided nothing more is to be done.
    # The record stays; it is no longer offered for retry.
    discarded_at = models.DateTimeField(null=True, blank=True)
    # A database default too: web processes of the previous release, still running during a
    # deploy, insert jobs without this column.
    discarded_by_label = models.CharField(max_length=255, blank=True, default="", db_default="")
    # Set when the job's message went to its dead-letter queue before the job ended: moved
    # there by a worker (a task it does not know, a message it cannot read) or by SQS's
    # redrive policy (found by the depth sample); cleared by a redrive. Until then no
    # worker runs it, and its page says so instead of only "Queued".
    dead_lettered_at = models.DateTimeField(null=True, blank=True)
    dead_letter_reason = models.CharField(max_length=1000, blank=True, default="", db_default="")

    class Meta:
        permissions = [
            ("run_diagnostic", "Can run the diagnostic job"),
            ("run_recurring_now", "Can run a recurring task now"),
            *JOB_ACTION_PERMISSIONS,
        ]
        indexes = [
            models.Index(
                fields=["created_at"], condition=Q(sent_at__isnull=True), name="job_unsent_idx"
            ),
            # The job list's queue and requester filters, newest first.
            models.Index(fields=["queue", "-created_at"], name="job_queue_created_idx"),
            models.Index(
                fields=["requester_label", "-created_at"], name="job_requester_created_idx"
            ),
            # "Not yet discarded" filters read the few discarded jobs, not every job.
            models.Index(
                fields=["task_id"],
                condition=Q(discarded_at__isnull=False),
                name="job_discarded_idx",
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(progress_done__isnull=True)
                | Q(progress_total__isnull=True)
                | Q(progress_done__lte=F("progress_total")),
                name="job_progress_within_total",
            ),
            models.CheckConstraint(
                condition=~Q(requester_kind=RequesterKind.USER) | Q(requester_label__gt=""),
                name="job_user_requester_named",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task_name} [{self.task_id}]"


class JobLogChunk(models.Model):
    """A batch of consecutive log lines [start_line, end_line) of one job."""

    task_id = models.CharField(max_length=255)
    start_line = models.PositiveIntegerField()
    end_line = models.PositiveIntegerField()
    text = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["task_id", "start_line"], name="joblog_chunk_unique"),
            models.CheckConstraint(
                condition=Q(end_line__gt=F("start_line")), name="joblog_chunk_not_empty"
            ),
        ]
        indexes = [models.Index(fields=["task_id", "end_line"], name="joblog_task_end_idx")]

    def __str__(self) -> str:
        return f"{self.task_id} lines {self.start_line}-{self.end_line}"


class DiagnosticRun(models.Model):
    """The domain row of the diagnostic job: proves the job spine end to end."""

    class State(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    lines = models.PositiveIntegerField(default=300)
    duration_seconds = models.FloatField(default=4.0)
    # A transient fault: the first attempt fails, a retry (a new job, or a redelivery of
    # this one) succeeds. Shows a failure, and what retrying it does.
    fail = models.BooleanField(
        default=False,
        help_text="End the first attempt with an error, to see a failure and a retry.",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    task_id = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    summary = models.JSONField(null=True, blank=True)
    # Why it failed when nothing in the run itself said so (its worker was lost).
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(lines__gte=1) & Q(lines__lte=100_000), name="diagnostic_lines_range"
            ),
            models.CheckConstraint(
                condition=Q(duration_seconds__gte=0) & Q(duration_seconds__lte=600),
                name="diagnostic_duration_range",
            ),
        ]

    def __str__(self) -> str:
        return f"Diagnostic #{self.pk} ({self.state})"


class QueueDepth(models.Model):
    """The last SQS depth sample of one queue (GetQueueAttributes), written by a periodic
    task so that pages read it from the database and never call AWS."""

    queue = models.CharField(max_length=64, unique=True)
    visible = models.PositiveIntegerField(default=0)
    in_flight = models.PositiveIntegerField(default=0)
    delayed = models.PositiveIntegerField(default=0)
    dead_letters = models.PositiveIntegerField(default=0)
    # Why the last sample failed (queue missing, AWS unreachable); empty when it worked.
    error = models.CharField(max_length=500, blank=True)
    sampled_at = models.DateTimeField()
    # When SQS made the queue (CreatedTimestamp): a job sent before then went with the
    # queue it replaced (workers/lost_messages.py).
    queue_created_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["queue"]
        permissions = [("view_operations", "Can view the operations page")]

    def __str__(self) -> str:
        return f"{self.queue}: {self.visible} visible, {self.in_flight} in flight"


class DeadLetterAction(models.Model):
    """Who sent a dead letter back to its queue or discarded it, and when (the audit)."""

    class Kind(models.TextChoices):
        REDRIVE = "redrive", "Redriven to its queue"
        DISCARD = "discard", "Discarded"

    kind = models.CharField(max_length=16, choices=Kind.choices)
    queue = models.CharField(max_length=64)
    message_id = models.CharField(max_length=128)
    task_id = models.CharField(max_length=255, blank=True)
    task_name = models.CharField(max_length=255, blank=True)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Kept if the user is deleted later, so the audit trail survives.
    username = models.CharField(max_length=150)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]
        permissions = [("manage_dead_letters", "Can redrive or discard dead letters")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.queue} {self.message_id}"


class FlowerAction(models.Model):
    """Who used Flower's remote control, on what, and when (the audit; workers/flower.py).

    Flower's logins are the project's Django accounts (workers/flower_accounts.py), unless
    it was started with logins of its own (basic auth or OAuth): the login's name is kept."""

    action = models.CharField(max_length=64)
    # The worker, task id or task name the action was aimed at.
    target = models.CharField(max_length=255)
    # The request's options as Flower read them ("n=1", "terminate=true signal=SIGKILL").
    arguments = models.CharField(max_length=255, blank=True)
    username = models.CharField(max_length=150)
    remote_addr = models.CharField(max_length=64, blank=True)
    # What Flower answered: 200 done, 403 refused, 4xx/5xx failed.
    status = models.PositiveSmallIntegerField()
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at"]
        permissions = [("control_workers", "Can control workers and tasks from Flower")]

    def __str__(self) -> str:
        return f"{self.action} {self.target} by {self.username}"


class WorkerHeartbeat(models.Model):
    """Each worker process upserts its row every few seconds while it runs."""

    hostname = models.CharField(max_length=255, unique=True)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list)
    concurrency = models.PositiveIntegerField(default=0)
    active = models.PositiveIntegerField(default=0)
    processed = models.PositiveIntegerField(default=0)
    monitored = models.BooleanField(
        default=False, help_text="Sends events and answers remote control (Flower)."
    )
    started_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(db_index=True)
    last_receive_at = models.DateTimeField(
        null=True,
        blank=True,
        help_text="When its consumer last received from SQS (or skipped a poll, every slot "
        "busy): the thread that writes this row can outlive a consumer that stopped.",
    )
    queue_receives = models.JSONField(
        default=dict,
        blank=True,
        help_text="The same per queue ({queue: ISO time}): one queue's polls can fail while "
        "the others' work (its SQS queue deleted).",
    )

    class Meta:
        ordering = ["-last_seen_at"]

    def __str__(self) -> str:
        return self.hostname


class QueuePause(models.Model):
    """A paused queue: every worker stops taking its jobs, and one that starts later does
    not begin to (workers/queue_pauses.py). Resuming deletes the row."""

    queue = models.CharField(max_length=64, unique=True)
    paused_at = models.DateTimeField(auto_now_add=True)
    paused_by_label = models.CharField(max_length=255)

    class Meta:
        permissions = [("pause_queue", "Can pause and resume a queue")]

    def __str__(self) -> str:
        return f"{self.queue} paused by {self.paused_by_label}"
