from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class WorkersConfig(AppConfig):
    name = "workers"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"
    # This module holds two configs (the admin's below); this one is the app's.
    default = True

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from workers.jobs_discovery import jobs_modules_import
        from workers.periodic import periodic_jobs_sync
        from workers.reconcile import job_lost_register
        from workers.retries import job_retry_declare
        from workers.selectors import diagnostic_job_subject
        from workers.subjects import job_subject_register

        jobs_modules_import()
        # After each migrate and after a test flushes the database: beat's rows follow the
        # declarations in each app's jobs.py.
        post_migrate.connect(periodic_jobs_sync, sender=self, dispatch_uid="periodic_jobs_sync")
        job_subject_register(("workers.tasks.diagnostic_run_execute",), diagnostic_job_subject)
        job_lost_register(
            ("workers.tasks.diagnostic_run_execute",), "workers.services.diagnostic_run_mark_lost"
        )
        # Each re-reads its row or its inputs and does idempotent work.
        job_retry_declare(
            (
                "workers.tasks.diagnostic_run_execute",
                "workers.tasks.job_republish_unsent",
                "workers.tasks.job_records_cleanup",
                "workers.tasks.queue_depths_record",
            ),
            safe=True,
        )


class OpsqueueAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with opsqueue's site (workers/admin_site.py): in INSTALLED_APPS
    in place of "django.contrib.admin"."""

    default = False
    default_site = "workers.admin_site.OpsqueueAdminSite"

    def ready(self) -> None:
        from django.contrib.admin import helpers, options, widgets
        from django.db import models

        from workers.admin_links import raw_id_widget_context, readonly_related_link
        from workers.storable import StorableJSONField

        # Every admin's read-only foreign keys, the libraries' too: a link only for whoever
        # may open the related record's page (Django links it for anyone).
        helpers.AdminReadonlyField.get_admin_url = readonly_related_link  # type: ignore[method-assign,assignment]
        # And every raw-id field's lookup and link (ManyToManyRawIdWidget's too).
        widgets.ForeignKeyRawIdWidget.get_context = raw_id_widget_context  # type: ignore[method-assign,assignment]

        # Every JSON field of every admin form and inline, the libraries' too: a value
        # PostgreSQL cannot store (`\u0000`) is a form error instead of a 500. Set before
        # the admins are discovered, which copy these defaults when they are created.
        options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = {"form_class": StorableJSONField}
        super().ready()
