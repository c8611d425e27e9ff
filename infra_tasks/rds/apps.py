from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RdsConfig(AppConfig):
    name = "infra_tasks.rds"
    label = "rds"
    verbose_name = "Managed databases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.rds.selectors import database_action_job_subject
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        post_migrate.connect(_ensure_periodic_tasks, sender=self)
        job_subject_register(
            (
                "infra_tasks.rds.tasks.execute_database_action",
                "infra_tasks.rds.tasks.run_scheduled_action",
            ),
            database_action_job_subject,
        )
        # A scheduled action and the enforcement pass look at the database's actual state
        # first: running them again is harmless. A person's action is a record of its own.
        job_retry_declare(
            (
                "infra_tasks.rds.tasks.run_scheduled_action",
                "infra_tasks.rds.tasks.enforce_schedules",
            ),
            safe=True,
        )
        job_retry_declare(
            ("infra_tasks.rds.tasks.execute_database_action",),
            safe=False,
            refusal="A database action is a record of what was asked. Choose the action again "
            "on the database's page instead.",
        )


def _ensure_periodic_tasks(**kwargs: Any) -> None:
    # After every migrate (each deploy), so the interval follows the setting.
    from infra_tasks.rds.services import system_periodic_tasks_ensure

    system_periodic_tasks_ensure()
