from django.apps import AppConfig


class ReleasesConfig(AppConfig):
    name = "infra_tasks.releases"
    label = "releases"
    verbose_name = "Releases"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from infra_tasks.releases.selectors import release_job_subject
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        job_subject_register(("infra_tasks.releases.tasks.release_migrate",), release_job_subject)
        job_retry_declare(
            ("infra_tasks.releases.tasks.release_migrate",),
            safe=False,
            refusal="A release is retried from its own page, which checks the migration plan "
            "first: open the release and press Retry.",
        )
