"""Resolving secret references (what the worker does before running terraform)."""

from __future__ import annotations

import pytest

from infra_tasks.terraform.models import SecretSource, TerraformSecret
from infra_tasks.terraform.secrets import SecretUnavailable, secrets_resolve
from tests.support.servers import AwsEndpoint


def test_environment_reference_resolves_and_a_missing_one_names_only_the_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSQUEUE_TEST_TOKEN", "env-secret-value")
    found = TerraformSecret(
        variable="token", source=SecretSource.ENV, reference="OPSQUEUE_TEST_TOKEN"
    )
    assert secrets_resolve([found]) == {"token": "env-secret-value"}

    missing = TerraformSecret(variable="token", source=SecretSource.ENV, reference="NOT_SET_HERE")
    with pytest.raises(SecretUnavailable, match=r"'NOT_SET_HERE'.*not set"):
        secrets_resolve([missing])


def test_ssm_and_secrets_manager_references_resolve_against_the_aws_endpoint(
    aws: AwsEndpoint,
) -> None:
    aws.client("ssm").put_parameter(
        Name="/opsqueue/unit/db", Value="ssm-value-123", Type="SecureString", Overwrite=True
    )
    aws.client("secretsmanager").create_secret(
        Name="opsqueue-unit-key", SecretString="sm-value-456"
    )
    references = [
        TerraformSecret(variable="db", source=SecretSource.SSM, reference="/opsqueue/unit/db"),
        TerraformSecret(
            variable="key", source=SecretSource.SECRETS_MANAGER, reference="opsqueue-unit-key"
        ),
    ]
    assert secrets_resolve(references) == {"db": "ssm-value-123", "key": "sm-value-456"}
