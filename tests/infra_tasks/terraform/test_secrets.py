"""Resolving secret references (what the worker does before running terraform)."""

from __future__ import annotations

import pytest

from infra_tasks.terraform.models import SecretSource, TerraformSecret
from infra_tasks.terraform.secrets import (
    SecretReferenceRefused,
    SecretUnavailable,
    secret_reference_check,
    secrets_resolve,
)
from tests.support.servers import AwsEndpoint


def test_environment_reference_resolves_and_a_missing_one_names_only_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TF_SECRET_TEST_TOKEN", "env-secret-value")
    found = TerraformSecret(
        variable="token", source=SecretSource.ENV, reference="TF_SECRET_TEST_TOKEN"
    )
    assert secrets_resolve([found]) == {"token": "env-secret-value"}

    missing = TerraformSecret(
        variable="token", source=SecretSource.ENV, reference="TF_SECRET_NOT_SET_HERE"
    )
    with pytest.raises(SecretUnavailable, match=r"'TF_SECRET_NOT_SET_HERE'.*not set"):
        secrets_resolve([missing])


def test_ssm_and_secrets_manager_references_resolve_against_the_aws_endpoint(
    aws: AwsEndpoint,
) -> None:
    aws.client("ssm").put_parameter(
        Name="/opsqueue/terraform/unit/db",
        Value="ssm-value-123",
        Type="SecureString",
        Overwrite=True,
    )
    aws.client("secretsmanager").create_secret(
        Name="opsqueue/terraform/unit-key", SecretString="sm-value-456"
    )
    references = [
        TerraformSecret(
            variable="db", source=SecretSource.SSM, reference="/opsqueue/terraform/unit/db"
        ),
        TerraformSecret(
            variable="key",
            source=SecretSource.SECRETS_MANAGER,
            reference="opsqueue/terraform/unit-key",
        ),
    ]
    assert secrets_resolve(references) == {"db": "ssm-value-123", "key": "sm-value-456"}


@pytest.mark.parametrize(
    ("source", "reference"),
    [
        (SecretSource.ENV, "DJANGO_SECRET_KEY"),
        (SecretSource.ENV, "DATABASE_PASSWORD"),
        (SecretSource.SSM, "/prod/database/password"),
        (SecretSource.SSM, "/opsqueue/terraform/../../prod/db"),
        (SecretSource.SECRETS_MANAGER, "prod/master-key"),
        (SecretSource.SECRETS_MANAGER, "arn:aws:secretsmanager:us-east-1:1:secret:prod/key-AbCd"),
    ],
)
def test_a_reference_outside_the_allowed_prefixes_is_refused_by_the_worker(
    monkeypatch: pytest.MonkeyPatch, source: str, reference: str
) -> None:
    monkeypatch.setenv("DJANGO_SECRET_KEY", "the-workers-own-key")
    monkeypatch.setenv("DATABASE_PASSWORD", "the-workers-db-password")
    with pytest.raises(SecretReferenceRefused, match="is not allowed") as refused:
        secrets_resolve([TerraformSecret(variable="x", source=source, reference=reference)])
    assert "the-workers" not in str(refused.value)


@pytest.mark.parametrize(
    ("source", "reference"),
    [
        (SecretSource.ENV, "TF_SECRET_API_TOKEN"),
        (SecretSource.SSM, "/opsqueue/terraform/demo/db"),
        (SecretSource.SSM, "arn:aws:ssm:us-east-1:1:parameter/opsqueue/terraform/demo/db"),
        (SecretSource.SECRETS_MANAGER, "opsqueue/terraform/demo-key"),
        (
            SecretSource.SECRETS_MANAGER,
            "arn:aws:secretsmanager:us-east-1:1:secret:opsqueue/terraform/demo-key-AbCd",
        ),
    ],
)
def test_references_under_the_allowed_prefixes_pass(source: str, reference: str) -> None:
    secret_reference_check(source=source, reference=reference)
