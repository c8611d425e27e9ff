"""Where state, plans and bundles live in the bucket, and the backend settings terraform gets."""

from __future__ import annotations

import pytest
from django.test import override_settings

from infra_tasks.terraform import remote


@override_settings(
    TERRAFORM_STATE_BUCKET="ops-tf",
    TERRAFORM_STATE_PREFIX="state",
    TERRAFORM_PLAN_PREFIX="plans",
    TERRAFORM_S3_ENDPOINT_URL="",
    AWS_REGION="eu-west-1",
)
def test_keys_follow_the_prefixes_and_production_settings_name_no_endpoint() -> None:
    assert remote.state_key("web") == "state/web/terraform.tfstate"
    assert remote.plan_key("web", 7) == "plans/web/run-7.tfplan"
    assert remote.bundle_key("web", "ab" * 32) == f"plans/web/bundle-{'ab' * 32}.tar.gz"
    assert remote.backend_config("state/web/terraform.tfstate").splitlines() == [
        'bucket = "ops-tf"',
        'key = "state/web/terraform.tfstate"',
        'region = "eu-west-1"',
        "encrypt = true",
        "use_lockfile = true",
        'workspace_key_prefix = "state/web/env"',
    ]


@override_settings(TERRAFORM_STATE_BUCKET="dev", TERRAFORM_S3_ENDPOINT_URL="http://127.0.0.1:5000")
def test_the_local_endpoint_gets_path_style_addressing_and_no_aws_account_lookups() -> None:
    config = remote.backend_config("state/demo/terraform.tfstate")
    assert 'endpoints = { s3 = "http://127.0.0.1:5000" }' in config
    for line in ("use_path_style = true", "skip_requesting_account_id = true"):
        assert line in config


@override_settings(TERRAFORM_STATE_BUCKET="")
def test_no_bucket_is_a_clear_error() -> None:
    with pytest.raises(remote.StorageError, match="TERRAFORM_STATE_BUCKET is not set"):
        remote.backend_config("state/demo/terraform.tfstate")
