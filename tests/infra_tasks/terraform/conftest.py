"""Terraform test workspaces: a fresh copy of a configuration under TERRAFORM_ROOT per test,
with state and plans in the local endpoint's S3 (the session's bucket)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings

from infra_tasks.terraform import cli, remote
from infra_tasks.terraform.models import TerraformWorkspace
from tests.support.servers import AwsEndpoint

CONFIGS = Path(__file__).parent / "workspaces"


@pytest.fixture(scope="session", autouse=True)
def terraform_dirs() -> Iterator[None]:
    root = Path(settings.TERRAFORM_ROOT)
    root.mkdir(parents=True, exist_ok=True)
    yield
    for path in (
        root,
        Path(settings.TERRAFORM_WORK_DIR),
        Path(settings.TERRAFORM_PLUGIN_CACHE_DIR),
        Path(settings.EMAIL_FILE_PATH),
    ):
        # Only what the test session made for itself (tests/environment.py); never a
        # directory someone pointed these settings at.
        if path.is_relative_to(tempfile.gettempdir()):
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # the session directory, once empty


@pytest.fixture(scope="session")
def state_bucket(aws: AwsEndpoint) -> Iterator[str]:
    """The session's state bucket in the local endpoint, versioned as in production. This
    process read its settings before the endpoint existed: point its backend settings there
    too (workers get AWS_ENDPOINT_URL from the start)."""
    bucket = settings.TERRAFORM_STATE_BUCKET
    s3 = aws.client("s3")
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    with override_settings(TERRAFORM_S3_ENDPOINT_URL=aws.url):
        yield bucket


@pytest.fixture
def make_workspace(state_bucket: str) -> Callable[..., TerraformWorkspace]:
    def make(config: str = "basic", **fields: Any) -> TerraformWorkspace:
        name = f"ws-{uuid.uuid4().hex[:8]}"
        shutil.copytree(CONFIGS / config, Path(settings.TERRAFORM_ROOT) / name)
        return TerraformWorkspace.objects.create(name=name, directory=name, **fields)

    return make


def s3_objects(aws: AwsEndpoint, prefix: str) -> dict[str, bytes]:
    s3 = aws.client("s3")
    listing = s3.list_objects_v2(Bucket=settings.TERRAFORM_STATE_BUCKET, Prefix=prefix)
    return {
        item["Key"]: s3.get_object(Bucket=settings.TERRAFORM_STATE_BUCKET, Key=item["Key"])[
            "Body"
        ].read()
        for item in listing.get("Contents", [])
    }


@contextlib.contextmanager
def outside_directory(workspace: TerraformWorkspace) -> Iterator[Path]:
    """A copy of the workspace's configuration initialised against its state in the bucket,
    the way someone would run terraform by hand."""
    with tempfile.TemporaryDirectory(prefix="opsqueue-outside-") as tmp:
        directory = Path(tmp) / "config"
        shutil.copytree(Path(settings.TERRAFORM_ROOT) / workspace.directory, directory)
        backend = Path(tmp) / "backend.tfbackend"
        backend.write_text(remote.backend_config(remote.state_key(workspace.name)))
        subprocess.run(
            cli.init_command(settings.TERRAFORM_BIN, backend_config=backend),
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        yield directory


def terraform_outside(workspace: TerraformWorkspace, *args: str) -> str:
    """Run terraform by hand against the workspace's state: a change made outside opsqueue."""
    with outside_directory(workspace) as directory:
        result = subprocess.run(
            [settings.TERRAFORM_BIN, *args],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
    return result.stdout


def processes_working_in(fragment: str) -> dict[int, str]:
    """Running processes (pid → command name) whose working directory path contains
    `fragment`: a step's tether, terraform and the children of its local-exec."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cwd = os.readlink(entry / "cwd")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name, rest = stat.split("(", 1)[1].rsplit(")", 1)
        if fragment in cwd and rest.split()[0] != "Z":
            found[int(entry.name)] = name
    return found
