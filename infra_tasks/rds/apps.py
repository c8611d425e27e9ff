from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RdsConfig(AppConfig):
    name = "infra_tasks.rds"
    label = "rds"
    verbose_name = "Managed databases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        post_migrate.connect(_ensure_periodic_tasks, sender=self)


def _ensure_periodic_tasks(**kwargs: Any) -> None:
    # After every migrate (each deploy), so the interval follows the setting.
    from infra_tasks.rds.services import system_periodic_tasks_ensure

    system_periodic_tasks_ensure()
