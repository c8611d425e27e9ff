"""Where terraform runs keep what outlives a step: one S3 bucket (TERRAFORM_STATE_BUCKET).

    <TERRAFORM_STATE_PREFIX>/<workspace>/terraform.tfstate    state, terraform's s3 backend
    <TERRAFORM_STATE_PREFIX>/<workspace>/terraform.tfstate.tflock   its lock (use_lockfile)
    <TERRAFORM_PLAN_PREFIX>/<workspace>/run-<id>.tfplan       a run's saved plan
    <TERRAFORM_PLAN_PREFIX>/<workspace>/bundle-<sha256>.tar.gz   a configuration bundle

Only infra workers call this; the web process never touches the bucket. boto3 finds the
endpoint (AWS_ENDPOINT_URL in development and tests) and credentials itself.
"""

from __future__ import annotations

import json
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from workers.errors import ApplicationError

STATE_FILE = "terraform.tfstate"
LOCK_SUFFIX = ".tflock"


class StorageError(ApplicationError):
    """The bucket could not be used; the message says what to fix or what failed."""


def bucket() -> str:
    if not settings.TERRAFORM_STATE_BUCKET:
        raise StorageError(
            "TERRAFORM_STATE_BUCKET is not set: terraform state and saved plans are kept in S3, "
            "never on a worker's disk."
        )
    return str(settings.TERRAFORM_STATE_BUCKET)


def state_key(workspace: str) -> str:
    return f"{settings.TERRAFORM_STATE_PREFIX}/{workspace}/{STATE_FILE}"


def plan_key(workspace: str, run_id: int) -> str:
    return f"{settings.TERRAFORM_PLAN_PREFIX}/{workspace}/run-{run_id}.tfplan"


def bundle_key(workspace: str, sha256: str) -> str:
    return f"{settings.TERRAFORM_PLAN_PREFIX}/{workspace}/bundle-{sha256}.tar.gz"


def backend_config(key: str) -> str:
    """The `-backend-config` file for a configuration that declares `backend "s3" {}`."""
    values: dict[str, Any] = {
        "bucket": bucket(),
        "key": key,
        "region": settings.AWS_REGION,
        "encrypt": True,
        # S3 conditional writes hold the lock: no DynamoDB table.
        "use_lockfile": True,
        # Non-default terraform workspaces stay under the state prefix too (the IAM grant).
        "workspace_key_prefix": key.rsplit("/", 1)[0] + "/env",
    }
    endpoint = settings.TERRAFORM_S3_ENDPOINT_URL
    if endpoint:
        # The local AWS-compatible endpoint: no account, no instance metadata, no DNS-style
        # bucket names.
        values.update(
            use_path_style=True,
            skip_credentials_validation=True,
            skip_requesting_account_id=True,
            skip_metadata_api_check=True,
            skip_region_validation=True,
        )
    lines = [f"{name} = {json.dumps(value)}" for name, value in values.items()]
    if endpoint:
        lines.append(f"endpoints = {{ s3 = {json.dumps(endpoint)} }}")
    return "\n".join(lines) + "\n"


def object_put(key: str, data: bytes) -> None:
    _call("store", key, lambda s3: s3.put_object(Bucket=bucket(), Key=key, Body=data))


def object_get(key: str) -> bytes | None:
    """The object's bytes, or None when there is no such object."""

    def get(s3: Any) -> bytes | None:
        try:
            return bytes(s3.get_object(Bucket=bucket(), Key=key)["Body"].read())
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    return _call("read", key, get)


def object_delete(key: str) -> None:
    _call("delete", key, lambda s3: s3.delete_object(Bucket=bucket(), Key=key))


def state_lock_read(key: str) -> dict[str, Any] | None:
    """The lock info terraform wrote beside a state (ID, Operation, Who, Created, ...), or
    None when the state is not locked."""
    data = object_get(key + LOCK_SUFFIX)
    if data is None:
        return None
    try:
        info = json.loads(data)
    except ValueError:
        return {"ID": "", "Info": "unreadable lock file"}
    return info if isinstance(info, dict) else {"ID": "", "Info": "unreadable lock file"}


def _call(what: str, key: str, operation: Any) -> Any:
    s3 = boto3.client("s3", region_name=settings.AWS_REGION)
    try:
        return operation(s3)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise StorageError(f"could not {what} s3://{bucket()}/{key} ({code})") from None
    except BotoCoreError as exc:
        raise StorageError(
            f"could not {what} s3://{bucket()}/{key} ({exc.__class__.__name__})"
        ) from None
