from django.apps import AppConfig


class RdsConfig(AppConfig):
    name = "infra_tasks.rds"
    label = "rds"
    verbose_name = "Managed databases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.rds import jobs
        from infra_tasks.rds.selectors import database_action_job_subject
        from workers.job_registry import JobSpec
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        def names(*specs: JobSpec) -> tuple[str, ...]:
            # Former names too: a job queued before the rename keeps its subject and rule.
            return tuple(name for spec in specs for name in (spec.name, *spec.old_names))

        job_subject_register(
            names(jobs.DATABASE_ACTION_EXECUTE, jobs.DATABASE_SCHEDULED_RUN),
            database_action_job_subject,
        )
        # A scheduled action and the enforcement pass look at the database's actual state
        # first: running them again is harmless. A person's action is a record of its own.
        job_retry_declare(names(jobs.DATABASE_SCHEDULED_RUN, jobs.DATABASES_ENFORCE), safe=True)
        job_retry_declare(
            names(jobs.DATABASE_ACTION_EXECUTE),
            safe=False,
            refusal="A database action is a record of what was asked. Choose the action again "
            "on the database's page instead.",
        )
