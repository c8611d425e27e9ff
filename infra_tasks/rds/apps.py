from django.apps import AppConfig


class RdsConfig(AppConfig):
    name = "infra_tasks.rds"
    label = "rds"
    verbose_name = "Managed databases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.rds import jobs
        from infra_tasks.rds.selectors import database_action_job_subject
        from workers.reconcile import job_lost_register
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        job_subject_register(
            (jobs.DATABASE_ACTION_EXECUTE.name, jobs.DATABASE_SCHEDULED_RUN.name),
            database_action_job_subject,
        )
        # Its worker lost, or killed at its time limit: the action says so, not "running".
        job_lost_register(
            (jobs.DATABASE_ACTION_EXECUTE.name, jobs.DATABASE_SCHEDULED_RUN.name),
            "infra_tasks.rds.services.actions.database_action_mark_lost",
        )
        # A scheduled action and the enforcement pass look at the database's actual state
        # first: running them again is harmless. A person's action is a record of its own.
        job_retry_declare(
            (jobs.DATABASE_SCHEDULED_RUN.name, jobs.DATABASES_ENFORCE.name), safe=True
        )
        job_retry_declare(
            (jobs.DATABASE_ACTION_EXECUTE.name,),
            safe=False,
            refusal="A database action is a record of what was asked. Choose the action again "
            "on the database's page instead.",
        )
