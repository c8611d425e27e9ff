"""Terraform test workspaces: a fresh copy of a configuration under TERRAFORM_ROOT per test."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from infra_tasks.terraform.models import TerraformWorkspace

CONFIGS = Path(__file__).parent / "workspaces"


@pytest.fixture(scope="session", autouse=True)
def terraform_dirs() -> Iterator[None]:
    root, plans = Path(settings.TERRAFORM_ROOT), Path(settings.TERRAFORM_PLAN_DIR)
    root.mkdir(parents=True, exist_ok=True)
    yield
    for path in (root, plans, Path(settings.EMAIL_FILE_PATH)):
        # Only what the test session made for itself (tests/environment.py); never a
        # directory someone pointed these settings at.
        if path.is_relative_to(tempfile.gettempdir()):
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # the session directory, once empty


@pytest.fixture
def make_workspace() -> Callable[..., TerraformWorkspace]:
    def make(config: str = "basic", **fields: Any) -> TerraformWorkspace:
        name = f"ws-{uuid.uuid4().hex[:8]}"
        shutil.copytree(CONFIGS / config, Path(settings.TERRAFORM_ROOT) / name)
        return TerraformWorkspace.objects.create(name=name, directory=name, **fields)

    return make


def terraform_outside(workspace: TerraformWorkspace, *args: str) -> str:
    """Run terraform in a workspace's directory by hand: a change made outside opsqueue."""
    result = subprocess.run(
        [settings.TERRAFORM_BIN, *args],
        cwd=Path(settings.TERRAFORM_ROOT) / workspace.directory,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout
