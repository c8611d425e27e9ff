"""Release records: one per version, saying who started it, what it migrated, and how it ended.

A release outlives its job: `Job` rows and logs expire with their results, so the requester
is copied here and `previous_task_ids` keeps the jobs of earlier, failed attempts.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from workers.models import RequesterFields


class ReleaseState(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


FINISHED_STATES = (ReleaseState.SUCCEEDED, ReleaseState.FAILED)


class Release(RequesterFields):
    version = models.CharField(max_length=100, unique=True)
    state = models.CharField(
        max_length=16, choices=ReleaseState.choices, default=ReleaseState.QUEUED
    )
    task_id = models.CharField(max_length=255, blank=True)
    previous_task_ids = models.JSONField(default=list, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # [{"app": ..., "name": ..., "direction": "forward" | "backward"}], computed under the
    # lock: what was pending when this release ran, not when it was asked for.
    plan = models.JSONField(null=True, blank=True)
    applied = models.PositiveIntegerField(default=0)
    allow_unsafe = models.BooleanField(
        default=False, help_text="Backward-incompatible migrations were explicitly allowed."
    )
    unsafe_findings = models.JSONField(default=list, blank=True)
    summary = models.TextField(blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("run_release", "Can run release migrations")]
        constraints = [
            models.CheckConstraint(
                condition=~Q(state__in=FINISHED_STATES) | Q(finished_at__isnull=False),
                name="release_finished_has_end",
            ),
            models.CheckConstraint(
                condition=~Q(state=ReleaseState.FAILED) | ~Q(error=""),
                name="release_failure_has_error",
            ),
            models.CheckConstraint(condition=~Q(version=""), name="release_version_named"),
        ]

    def __str__(self) -> str:
        return f"release {self.version} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES
