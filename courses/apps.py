from django.apps import AppConfig


class CoursesConfig(AppConfig):
    name = "courses"
    label = "courses"
    verbose_name = "Courses"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from courses.selectors import cover_job_subject
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        job_subject_register(("media_pipeline.tasks.build_cover_variants",), cover_job_subject)
        # Variants are content-addressed and rebuilt idempotently from the stored original.
        job_retry_declare(("media_pipeline.tasks.build_cover_variants",), safe=True)
