"""The lost-run check: every 30 s, runs whose worker stopped beating are marked lost and their
workspace goes to the next run (editable in the beat admin)."""

from django.db import migrations

TASK = "infra_tasks.terraform.tasks.terraform_runs_mark_lost"
NAME = "Terraform lost runs"


def create_schedule(apps, schema_editor):
    """Superseded: the row is written after migrate from infra_tasks/terraform/jobs.py
    (workers/periodic.py)."""


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("terraform", "0003_remote_state_stored_plans_lost_runs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
