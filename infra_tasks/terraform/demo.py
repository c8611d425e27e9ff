"""Demo data for the dev stack: one workspace over the repository's terraform/demo."""

from __future__ import annotations

from typing import TextIO

from infra_tasks.terraform.models import TerraformWorkspace

DEMO_NAME = "demo"


def seed(*, stdout: TextIO) -> None:
    _, created = TerraformWorkspace.objects.get_or_create(
        name=DEMO_NAME,
        defaults={
            "directory": "demo",
            "variables": {"environment": "demo", "release": "1", "slow_step_seconds": 20},
        },
    )
    stdout.write(
        "terraform demo workspace "
        + ("created" if created else "present")
        + ": Admin → Terraform → Workspaces → 'demo' (Plan, then approve the run)"
    )
