"""The lost-run check: every 30 s, runs whose worker stopped beating are marked lost and their
workspace goes to the next run (editable in the beat admin)."""

from django.db import migrations

TASK = "infra_tasks.terraform.tasks.terraform_runs_mark_lost"
NAME = "Terraform lost runs"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every, _ = IntervalSchedule.objects.get_or_create(every=30, period="seconds")
    PeriodicTask.objects.get_or_create(
        name=NAME,
        defaults={
            "task": TASK,
            "interval": every,
            "description": (
                "Marks plans and applies whose worker has been silent for "
                "TERRAFORM_LOST_AFTER_SECONDS as 'worker lost — check the state' and starts "
                "the next queued run of their workspace."
            ),
        },
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("terraform", "0003_remote_state_stored_plans_lost_runs"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
