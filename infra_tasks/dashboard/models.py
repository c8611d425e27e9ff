"""What the dashboard shows of ECS, as last read by a worker: the web process reads only this."""

from __future__ import annotations

from django.db import models
from django.db.models import Q


class EcsServiceSnapshot(models.Model):
    cluster = models.CharField(max_length=255)
    service_name = models.CharField(max_length=255)
    status = models.CharField(max_length=32)
    desired_count = models.PositiveIntegerField()
    running_count = models.PositiveIntegerField()
    pending_count = models.PositiveIntegerField(default=0)
    refreshed_at = models.DateTimeField()

    class Meta:
        ordering = ["cluster", "service_name"]
        permissions = [("view_dashboard", "Can view the infrastructure dashboard")]
        constraints = [
            models.UniqueConstraint(
                fields=["cluster", "service_name"], name="dashboard_ecs_service_unique"
            ),
            models.CheckConstraint(
                condition=Q(service_name__gt=""), name="dashboard_ecs_service_named"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.cluster}/{self.service_name}"

    @property
    def in_step(self) -> bool:
        return self.running_count == self.desired_count and not self.pending_count
