from django.apps import AppConfig


class CoursesConfig(AppConfig):
    name = "courses"
    label = "courses"
    verbose_name = "Courses"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from courses.selectors import cover_job_subject, outline_report_job_subject
        from courses.tasks import course_outline_report
        from media_pipeline.jobs import COURSE_COVER_VARIANTS_BUILD, RETIRED_COVER_FILES_DELETE
        from media_pipeline.resize import ImageRejected
        from workers.reconcile import job_lost_register
        from workers.retries import job_retry_declare
        from workers.subjects import job_subject_register

        task_names = (COURSE_COVER_VARIANTS_BUILD.name,)  # rows under its former name too
        job_subject_register(task_names, cover_job_subject)
        job_subject_register((course_outline_report.module_path,), outline_report_job_subject)
        # Its worker lost, or killed at its time limit: the course says so, not "pending".
        job_lost_register(task_names, "courses.services.covers.course_cover_mark_lost")
        # Variants are content-addressed and rebuilt idempotently from the stored original.
        # A refused picture is not kept: its job, run again, would find nothing to build.
        job_retry_declare(
            task_names,
            safe=True,
            refused=(ImageRejected,),
            after_refusal="The picture is not kept: upload another on the course's page.",
        )
        # Deletes only what is past its grace period and unreferenced; a rerun finds less.
        job_retry_declare((RETIRED_COVER_FILES_DELETE.name,), safe=True)
