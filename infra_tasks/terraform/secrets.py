"""Resolving secret variables, in the worker only: the web process never sees a value."""

from __future__ import annotations

import os
from collections.abc import Iterable

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings

from infra_tasks.terraform.models import SecretSource, TerraformSecret


class SecretUnavailable(Exception):
    """A secret reference could not be resolved; the message names it, never a value."""


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
