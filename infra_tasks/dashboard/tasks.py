"""Thin tasks of the dashboard (routed to the `infra` queue by module)."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from infra_tasks.dashboard import services


@shared_task
def refresh_ecs_services() -> dict[str, Any]:
    return services.ecs_services_refresh()
