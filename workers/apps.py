from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"
    # This module holds two configs (the admin's below); this one is the app's.
    default = True

    def ready(self) -> None:
        from workers.retries import job_retry_declare
        from workers.selectors import diagnostic_job_subject
        from workers.subjects import job_subject_register

        job_subject_register(("workers.tasks.run_diagnostic",), diagnostic_job_subject)
        # Each re-reads its row or its inputs and does idempotent work.
        job_retry_declare(
            (
                "workers.tasks.run_diagnostic",
                "workers.tasks.republish_unsent_jobs",
                "workers.tasks.cleanup_job_records",
                "workers.tasks.record_queue_depths",
            ),
            safe=True,
        )


class OpsqueueAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with opsqueue's site (workers/admin_site.py): in INSTALLED_APPS
    in place of "django.contrib.admin"."""

    default = False
    default_site = "workers.admin_site.OpsqueueAdminSite"

    def ready(self) -> None:
        from django.contrib.admin import options
        from django.db import models

        from workers.storable import StorableJSONField

        # Every JSON field of every admin form and inline, the libraries' too: a value
        # PostgreSQL cannot store (`\u0000`) is a form error instead of a 500. Set before
        # the admins are discovered, which copy these defaults when they are created.
        options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = {"form_class": StorableJSONField}
        super().ready()
