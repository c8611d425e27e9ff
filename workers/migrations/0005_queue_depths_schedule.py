"""Sample the SQS queue depths every minute for the operations page (editable in the beat
admin)."""

from django.db import migrations

TASK = "workers.tasks.record_queue_depths"
NAME = "Record SQS queue depths"


def create_schedule(apps, schema_editor):
    """Superseded: the row is written after migrate from workers/jobs.py (workers/periodic.py)."""


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("workers", "0004_monitoring"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
