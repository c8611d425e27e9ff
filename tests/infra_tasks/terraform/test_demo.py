"""The dev stack's demo workspace and the drift schedule a fresh database starts with."""

from __future__ import annotations

import io
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import override_settings
from django_celery_beat.models import PeriodicTask

from infra_tasks.terraform import cli
from infra_tasks.terraform.configuration import collect, declared_backend
from infra_tasks.terraform.demo import DEMO_NAME, seed
from infra_tasks.terraform.jobs import DRIFT_CHECK_REQUEST_ALL, DRIFT_SCHEDULE_NAME
from infra_tasks.terraform.models import RunKind, RunState, TerraformWorkspace
from infra_tasks.terraform.services.runs import run_request
from tests.support.servers import AwsEndpoint, WorkerProcess, wait_until
from workers.enqueue import Requester
from workers.periodic import periodic_jobs_sync

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


def test_the_drift_check_is_scheduled_daily_for_the_registered_task() -> None:
    # Synced again here: other tests' table flushes remove what the sync after migrate
    # wrote. It is idempotent, like the sync after each deploy's migrate.
    periodic_jobs_sync()
    periodic_jobs_sync()
    schedule = PeriodicTask.objects.get(name=DRIFT_SCHEDULE_NAME)
    assert schedule.task == DRIFT_CHECK_REQUEST_ALL.name
    assert DRIFT_CHECK_REQUEST_ALL.task().name == schedule.task
    assert schedule.enabled and schedule.crontab is not None
    assert (schedule.crontab.minute, schedule.crontab.hour) == ("0", "6")


def test_the_demo_configuration_keeps_its_state_in_opsqueues_bucket() -> None:
    directory = cli.workspace_dir(settings.BASE_DIR / "terraform", "demo")
    assert declared_backend(collect(directory)) == "s3"


@pytest.mark.django_db(transaction=True)
def test_the_demo_workspace_plans_with_its_state_in_the_local_endpoints_s3(
    worker: WorkerProcess, state_bucket: str
) -> None:
    shutil.copytree(
        settings.BASE_DIR / "terraform" / "demo", Path(settings.TERRAFORM_ROOT) / "demo"
    )
    seed(stdout=io.StringIO())
    workspace = TerraformWorkspace.objects.get(name=DEMO_NAME)
    run = run_request(workspace=workspace, kind=RunKind.APPLY, requester=Requester.cli("test"))

    def planned() -> bool:
        run.refresh_from_db()
        return run.state in (RunState.PLANNED, RunState.FAILED)

    wait_until(planned, timeout=90, message="the demo plan")
    assert run.state == RunState.PLANNED, run.message
    assert run.state_key == f"{settings.TERRAFORM_STATE_PREFIX}/demo/terraform.tfstate"
    assert run.plan_summary == {"add": 3, "change": 0, "destroy": 0}


def test_the_local_state_bucket_is_made_like_the_production_one(aws: AwsEndpoint) -> None:
    bucket = f"opsqueue-bucket-check-{uuid.uuid4().hex[:8]}"
    with override_settings(TERRAFORM_STATE_BUCKET=bucket):
        call_command("terraform_state_bucket", stdout=io.StringIO())
        call_command("terraform_state_bucket", stdout=io.StringIO())  # again: no error
    s3 = aws.client("s3")
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"


def test_the_demo_passes_variables_to_its_command_as_data_not_shell(tmp_path: Path) -> None:
    """A release value written as shell is printed as it is, never run."""
    directory = tmp_path / "demo"
    shutil.copytree(settings.BASE_DIR / "terraform" / "demo", directory)
    main = directory / "main.tf"
    main.write_text(main.read_text().replace('backend "s3" {}', ""))  # local state here
    release = "$(id -un > canary)`touch canary2`"

    def terraform(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [settings.TERRAFORM_BIN, *args, "-no-color"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    assert terraform("init", "-input=false").returncode == 0
    applied = terraform(
        "apply",
        "-auto-approve",
        "-input=false",
        f"-var=release={release}",
        "-var=slow_step_seconds=1",
    )

    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert f"deploying release {release}: step 1/1" in applied.stdout
    assert not (directory / "canary").exists() and not (directory / "canary2").exists()
