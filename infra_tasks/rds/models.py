"""Managed databases, what was done to them, and when they were found off their schedule.

A database's schedule lives in django-celery-beat (two `PeriodicTask` rows: the nightly stop
and the morning start), so it can be edited in the beat admin too; the database only points
at them. `desired_state` is what the last schedule firing or admin action asked for;
`status` is what AWS last reported.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django_celery_beat.models import PeriodicTask

from workers.models import RequesterFields


class DatabaseKind(models.TextChoices):
    INSTANCE = "instance", "RDS instance"
    CLUSTER = "cluster", "Aurora cluster"


class DesiredState(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


# AWS's rules for DB instance/cluster identifiers, and the shape of a region name; checked
# here so a typo fails in the form, not in a job at 22:00.
identifier_validator = RegexValidator(
    r"^[A-Za-z](?!.*--)[A-Za-z0-9-]{0,62}(?<!-)$",
    "1-63 letters, digits or hyphens; starts with a letter; no double or trailing hyphen.",
)
region_validator = RegexValidator(r"^[a-z]{2}(-[a-z]+)+-\d+$", "An AWS region, e.g. eu-central-1.")


class ManagedDatabase(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=DatabaseKind.choices)
    identifier = models.CharField(
        max_length=63,
        validators=[identifier_validator],
        help_text="DBInstanceIdentifier or DBClusterIdentifier.",
    )
    region = models.CharField(max_length=32, validators=[region_validator])
    desired_state = models.CharField(
        max_length=16, choices=DesiredState.choices, default=DesiredState.RUNNING
    )
    keep_running_until = models.DateTimeField(
        null=True, blank=True, help_text="Until then, the nightly stop leaves it running."
    )
    enforce = models.BooleanField(
        default=True, help_text="Put it back where its schedule says when it drifts."
    )
    status = models.CharField(max_length=64, blank=True, help_text="As AWS last reported it.")
    status_checked_at = models.DateTimeField(null=True, blank=True)
    stop_task = models.OneToOneField(
        PeriodicTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    start_task = models.OneToOneField(
        PeriodicTask, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # The schedule occurrence each action last served: a second firing for the same
    # occurrence (two beats, a restart, a DST bug) does nothing.
    last_stop_occurrence = models.DateTimeField(null=True, blank=True, editable=False)
    last_start_occurrence = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        permissions = [("operate_manageddatabase", "Can stop, start and refresh databases")]
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "identifier", "region"], name="rds_database_unique_target"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.get_kind_display()} {self.identifier})"

    def schedule_name(self, action: str) -> str:
        """The name of its beat entry for `action` (stop or start): what a firing's
        action records as its requester."""
        label = "nightly stop" if action == ActionKind.STOP else "morning start"
        return f"rds: {label} of {self.name}"


class ActionKind(models.TextChoices):
    STOP = "stop", "Stop"
    START = "start", "Start"
    REFRESH = "refresh", "Refresh state"


class ActionState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    NOOP = "noop", "Nothing to do"
    SKIPPED = "skipped", "Skipped"
    FAILED = "failed", "Failed"


FINISHED_ACTION_STATES = (
    ActionState.SUCCEEDED,
    ActionState.NOOP,
    ActionState.SKIPPED,
    ActionState.FAILED,
)


class DatabaseAction(RequesterFields):
    """One stop/start/refresh of a database: a job with its log under `task_id`; who or
    what asked is in RequesterFields (a schedule firing: its beat entry's name)."""

    database = models.ForeignKey(ManagedDatabase, on_delete=models.CASCADE, related_name="actions")
    action = models.CharField(max_length=16, choices=ActionKind.choices)
    state = models.CharField(max_length=16, choices=ActionState.choices, default=ActionState.QUEUED)
    task_id = models.CharField(max_length=255, blank=True, db_index=True)
    status_before = models.CharField(max_length=64, blank=True)
    status_after = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    wait_seconds = models.FloatField(
        null=True, blank=True, help_text="How long AWS took to reach the target state."
    )
    message = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(wait_seconds__isnull=True) | Q(wait_seconds__gte=0),
                name="rds_action_wait_not_negative",
            ),
            models.CheckConstraint(
                condition=Q(finished_at__isnull=True) | Q(state__in=FINISHED_ACTION_STATES),
                name="rds_action_finished_only_when_done",
            ),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_action_display()} {self.database.name} ({self.get_state_display().lower()})"
        )


class Divergence(models.Model):
    """A database found not where its schedule says; open until it is back."""

    database = models.ForeignKey(
        ManagedDatabase, on_delete=models.CASCADE, related_name="divergences"
    )
    desired_state = models.CharField(max_length=16, choices=DesiredState.choices)
    observed_status = models.CharField(max_length=64)
    checks = models.PositiveIntegerField(default=1, help_text="Enforcement passes that saw it.")
    corrective_task_id = models.CharField(max_length=255, blank=True)
    detected_at = models.DateTimeField(auto_now_add=True)
    notified_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-detected_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["database"],
                condition=Q(resolved_at__isnull=True),
                name="rds_one_open_divergence_per_database",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.database.name}: {self.observed_status}, wanted {self.desired_state}"
