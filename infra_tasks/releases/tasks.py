"""The release job (queue `release`, by module): take the release id, call the service."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from infra_tasks.releases import services


@shared_task(bind=True)
def release_migrate(self: Any, release_id: int) -> dict[str, Any] | None:
    return services.release_execute(release_id=release_id, task_id=self.request.id)
