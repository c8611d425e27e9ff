"""Resolving secret variables, in the worker only: the web process never sees a value."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from infra_tasks.terraform.models import SecretSource, TerraformSecret
from workers.errors import ApplicationError


class SecretUnavailable(ApplicationError):
    """A secret reference could not be resolved; the message names it, never a value."""


class SecretReferenceRefused(SecretUnavailable):
    """A reference outside the allowed prefixes (settings TERRAFORM_SECRET_*)."""


# What terraform accepts as a variable name, and what an environment variable name may be.
TERRAFORM_VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def secret_reference_check(*, source: str, reference: str) -> None:
    """Raise SecretReferenceRefused unless `reference` is one an editor may name: the
    worker resolves it with its own credentials, so anything else would hand its secrets out."""
    if source == SecretSource.ENV:
        prefix = settings.TERRAFORM_SECRET_ENV_PREFIX
        if not (ENVIRONMENT_NAME.fullmatch(reference) and reference.startswith(prefix)):
            raise SecretReferenceRefused(
                f"An environment reference must be a variable name starting with {prefix} "
                "(TERRAFORM_SECRET_ENV_PREFIX)."
            )
        return
    if source == SecretSource.SSM:
        prefixes, setting = settings.TERRAFORM_SECRET_SSM_PREFIXES, "TERRAFORM_SECRET_SSM_PREFIXES"
        _, arn, after = reference.partition(":parameter")
        name = after if reference.startswith("arn:") and arn else reference
    elif source == SecretSource.SECRETS_MANAGER:
        prefixes = settings.TERRAFORM_SECRET_MANAGER_PREFIXES
        setting = "TERRAFORM_SECRET_MANAGER_PREFIXES"
        _, arn, after = reference.partition(":secret:")
        name = after if reference.startswith("arn:") and arn else reference
    else:
        raise SecretReferenceRefused(f"Unknown secret source {source!r}.")
    if ".." in name or not any(name.startswith(prefix) for prefix in prefixes if prefix):
        raise SecretReferenceRefused(
            f"The name must start with {' or '.join(prefixes) or '(none configured)'} ({setting})."
        )


def secrets_resolve(secrets: Iterable[TerraformSecret]) -> dict[str, str]:
    """Variable name → value for each secret reference."""
    values: dict[str, str] = {}
    clients: dict[str, object] = {}
    for secret in secrets:
        values[secret.variable] = _resolve_one(secret, clients)
    return values


def _client(service: str, clients: dict[str, object]) -> object:
    # boto3 reads AWS_ENDPOINT_URL itself (the local endpoint in development and tests).
    if service not in clients:
        clients[service] = boto3.client(service, region_name=settings.AWS_REGION)  # type: ignore[call-overload]
    return clients[service]


def _resolve_one(secret: TerraformSecret, clients: dict[str, object]) -> str:
    where = f"{secret.get_source_display()} {secret.reference!r} (variable {secret.variable})"
    # Checked again here: a reference saved before the bounds were set is refused too.
    try:
        secret_reference_check(source=secret.source, reference=secret.reference)
    except SecretReferenceRefused as exc:
        raise SecretReferenceRefused(f"{where} is not allowed: {exc}") from None
    try:
        if secret.source == SecretSource.ENV:
            value = os.environ.get(secret.reference)
            if value is None:
                raise SecretUnavailable(f"{where} is not set in the worker's environment")
            return value
        if secret.source == SecretSource.SSM:
            ssm: object = _client("ssm", clients)
            response = ssm.get_parameter(Name=secret.reference, WithDecryption=True)  # type: ignore[attr-defined]
            return str(response["Parameter"]["Value"])
        if secret.source == SecretSource.SECRETS_MANAGER:
            manager: object = _client("secretsmanager", clients)
            response = manager.get_secret_value(SecretId=secret.reference)  # type: ignore[attr-defined]
            if "SecretString" not in response:
                raise SecretUnavailable(f"{where} is binary; only text secrets are supported")
            return str(response["SecretString"])
    except ClientError as exc:
        # The error code only: AWS error messages can echo request parameters.
        code = exc.response.get("Error", {}).get("Code", "ClientError")
        raise SecretUnavailable(f"{where} could not be read ({code})") from None
    except BotoCoreError as exc:
        raise SecretUnavailable(f"{where} could not be read ({exc.__class__.__name__})") from None
    raise SecretUnavailable(f"{where}: unknown source")
