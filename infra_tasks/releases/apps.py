from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "infra_tasks.releases"
    label = "releases"
    verbose_name = "Releases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.releases.jobs import RELEASE_EXECUTE
        from infra_tasks.releases.selectors import release_job_subject
        from workers.reconcile import job_lost_register
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        task_names = (RELEASE_EXECUTE.name,)  # rows under its former name are found too
        job_subject_register(task_names, release_job_subject)
        # Its worker lost for good, or killed at its time limit: the release says so, and
        # may be run again, rather than reading "running" for good.
        job_lost_register(task_names, "infra_tasks.releases.services.migrate.release_mark_lost")
        job_retry_declare(
            task_names,
            safe=False,
            refusal="A release is run again from its own page, which shows the migration plan "
            "first: open the release and press Run this release again.",
        )
