from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class DashboardConfig(AppConfig):
    name = "infra_tasks.dashboard"
    label = "dashboard"
    verbose_name = "Infrastructure dashboard"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from workers.retries import job_retry_declare

        post_migrate.connect(_ensure_periodic_tasks, sender=self)
        job_retry_declare(("infra_tasks.dashboard.tasks.refresh_ecs_services",), safe=True)


def _ensure_periodic_tasks(**kwargs: Any) -> None:
    from infra_tasks.dashboard.services import system_periodic_tasks_ensure

    system_periodic_tasks_ensure()
