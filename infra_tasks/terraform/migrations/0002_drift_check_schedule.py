"""The drift check schedule: every workspace is planned daily (editable in the beat admin)."""

from django.db import migrations

TASK = "infra_tasks.terraform.tasks.terraform_drift_check_all"
NAME = "Terraform drift check"


def create_schedule(apps, schema_editor):
    """Superseded: the row is written after migrate from infra_tasks/terraform/jobs.py
    (workers/periodic.py)."""


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("terraform", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
