"""Indexes on django-celery-results' table for the job list's filters, newest first.

The list filters by state or by task and shows the latest 50: with (status, date_created)
and (task_name, date_created) that is an index range on a table of any size, where the
library's single-column indexes leave a sort of every matching row. PostgreSQL builds them
CONCURRENTLY so a large table stays writable meanwhile (hence a non-atomic migration).
"""

from django.db import migrations

INDEXES = {
    "jobs_result_status_created_idx": "(status, date_created DESC)",
    "jobs_result_task_created_idx": "(task_name, date_created DESC)",
}
TABLE = "django_celery_results_taskresult"


def create_indexes(apps, schema_editor):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    for name, columns in INDEXES.items():
        schema_editor.execute(
            f"CREATE INDEX {concurrently}IF NOT EXISTS {name} ON {TABLE} {columns}"
        )


def drop_indexes(apps, schema_editor):
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("workers", "0006_job_actions_and_queue_pauses"),
        ("django_celery_results", "0014_alter_taskresult_status"),
    ]

    operations = [migrations.RunPython(create_indexes, drop_indexes)]
