"""The dev stack's demo workspace and the drift schedule a fresh database starts with."""

from __future__ import annotations

import io
import subprocess
from importlib import import_module

import pytest
from django.apps import apps
from django.conf import settings
from django_celery_beat.models import PeriodicTask

from infra_tasks.terraform import cli
from infra_tasks.terraform.demo import DEMO_NAME, seed
from infra_tasks.terraform.models import TerraformWorkspace
from infra_tasks.terraform.services import DRIFT_SCHEDULE_NAME
from infra_tasks.terraform.tasks import terraform_drift_check_all

pytestmark = pytest.mark.django_db


def test_seed_registers_the_demo_workspace_once() -> None:
    seed(stdout=io.StringIO())
    seed(stdout=io.StringIO())
    workspace = TerraformWorkspace.objects.get(name=DEMO_NAME)
    assert TerraformWorkspace.objects.count() == 1
    assert workspace.variables["slow_step_seconds"] > 5, "slow enough to press Cancel"


def test_demo_configuration_ships_in_the_repository_and_is_valid() -> None:
    directory = cli.workspace_dir(settings.BASE_DIR / "terraform", "demo")
    result = subprocess.run(
        [settings.TERRAFORM_BIN, "validate", "-no-color"],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "terraform_data" in (directory / "main.tf").read_text()


def test_drift_check_schedule_migration_creates_a_schedule_for_the_registered_task() -> None:
    # Run again here: other tests' table flushes remove what migrations inserted. It is
    # idempotent, like the migration run on a database that already has the schedule.
    migration = import_module("infra_tasks.terraform.migrations.0002_drift_check_schedule")
    migration.create_schedule(apps, None)
    migration.create_schedule(apps, None)
    schedule = PeriodicTask.objects.get(name=DRIFT_SCHEDULE_NAME)
    assert schedule.task == terraform_drift_check_all.name
    assert schedule.enabled and schedule.crontab is not None
