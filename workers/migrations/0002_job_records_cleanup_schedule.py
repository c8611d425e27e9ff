"""Job rows and logs expire with their results: schedule the daily cleanup (editable in the
beat admin). Celery's own `celery.backend_cleanup` is installed by beat itself."""

from django.db import migrations

TASK = "workers.tasks.cleanup_job_records"
NAME = "Expire old job records and logs"


def create_schedule(apps, schema_editor):
    """Superseded: the row is written after migrate from workers/jobs.py (workers/periodic.py)."""


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workers", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
