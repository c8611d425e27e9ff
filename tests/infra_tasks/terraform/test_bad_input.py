"""Bad input in the workspace form and its secret inline: a form error on the page (200),
never a 500, and nothing saved. Names are terraform identifiers; secret references stay
inside the configured prefixes; values PostgreSQL cannot store are refused."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from infra_tasks.terraform.models import TerraformSecret, TerraformWorkspace
from infra_tasks.terraform.services.runs import run_time_limit, run_time_limit_max

pytestmark = pytest.mark.django_db


@pytest.fixture
def workspace() -> TerraformWorkspace:
    name = f"ws-{uuid.uuid4().hex[:8]}"
    (Path(settings.TERRAFORM_ROOT) / name).mkdir(parents=True)
    return TerraformWorkspace.objects.create(name=name, directory=name, variables={"release": "1"})


@pytest.fixture
def root() -> Client:
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    return client


def form_data(workspace: TerraformWorkspace, *secrets: dict[str, str], **fields: Any) -> dict:
    data: dict[str, Any] = {
        "directory": workspace.directory,
        "variables": '{"release": "1"}',
        "run_time_limit_seconds": "",
        "secrets-TOTAL_FORMS": str(len(secrets)),
        "secrets-INITIAL_FORMS": "0",
        "secrets-MIN_NUM_FORMS": "0",
        "secrets-MAX_NUM_FORMS": "1000",
        **fields,
    }
    for n, secret in enumerate(secrets):
        data.update({f"secrets-{n}-{key}": value for key, value in secret.items()})
    return data


def save(client: Client, workspace: TerraformWorkspace, data: dict) -> str:
    url = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    response = client.post(url, data)
    assert response.status_code == 200, "the form comes back with its errors"
    return response.content.decode()


@pytest.mark.parametrize(
    "variables",
    ['{"release": "evil\\u0000"}', '{"rel\\u0000ease": "1"}', '{"release": ["\\ud800"]}'],
)
def test_an_unstorable_character_in_a_variable_is_a_form_error(
    root: Client, workspace: TerraformWorkspace, variables: str
) -> None:
    page = save(root, workspace, form_data(workspace, variables=variables))

    assert "cannot be stored" in page
    workspace.refresh_from_db()
    assert workspace.variables == {"release": "1"}


@pytest.mark.parametrize("name", ["a=b", "x y", "1st", "rel;ease"])
def test_a_variable_name_that_is_no_identifier_is_a_form_error(
    root: Client, workspace: TerraformWorkspace, name: str
) -> None:
    page = save(root, workspace, form_data(workspace, variables=f'{{"{name}": "1"}}'))

    assert "Not a terraform variable name" in page
    workspace.refresh_from_db()
    assert workspace.variables == {"release": "1"}


@pytest.mark.parametrize("name", ["a=b", "x y", "1st", "tok\x00en"])
def test_a_secret_variable_name_that_is_no_identifier_is_a_form_error(
    root: Client, workspace: TerraformWorkspace, name: str
) -> None:
    secret = {"variable": name, "source": "env", "reference": "TF_SECRET_TOKEN"}

    page = save(root, workspace, form_data(workspace, secret))

    assert "Not a terraform variable name" in page or "Null characters" in page
    assert not TerraformSecret.objects.exists()


@pytest.mark.parametrize(
    ("source", "reference", "says"),
    [
        ("env", "DJANGO_SECRET_KEY", "TF_SECRET_"),
        ("ssm", "/prod/db/password", "/opsqueue/terraform/"),
        ("secretsmanager", "prod/master", "opsqueue/terraform/"),
    ],
)
def test_a_secret_reference_outside_the_allowed_prefixes_is_a_form_error(
    root: Client, workspace: TerraformWorkspace, source: str, reference: str, says: str
) -> None:
    secret = {"variable": "token", "source": source, "reference": reference}

    page = save(root, workspace, form_data(workspace, secret))

    assert "must" in page and says in page
    assert not TerraformSecret.objects.exists()


def test_the_secret_inline_says_which_references_are_allowed(
    root: Client, workspace: TerraformWorkspace
) -> None:
    url = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    page = root.get(url).content.decode()
    assert "a name starting with TF_SECRET_" in page and "/opsqueue/terraform/" in page


def test_an_allowed_secret_reference_is_saved(root: Client, workspace: TerraformWorkspace) -> None:
    secret = {"variable": "api_token", "source": "env", "reference": "TF_SECRET_API_TOKEN"}
    url = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])

    response = root.post(url, form_data(workspace, secret))

    assert response.status_code == 302
    assert TerraformSecret.objects.get().reference == "TF_SECRET_API_TOKEN"


@pytest.mark.parametrize("past", [1, 75_000])
def test_a_time_limit_the_infra_workers_cannot_honour_is_a_form_error(
    root: Client, workspace: TerraformWorkspace, past: int
) -> None:
    # Past the infra queue's soft time limit (less the cancel grace and the step's own work)
    # the worker's limit came first: terraform stopped as by an error, "internal error".
    most = run_time_limit_max()
    data = form_data(workspace, run_time_limit_seconds=str(most + past))
    page = save(root, workspace, data)

    assert f"At most {most:,} seconds" in page
    workspace.refresh_from_db()
    assert workspace.run_time_limit_seconds is None


def test_a_time_limit_of_zero_seconds_is_a_form_error(
    root: Client, workspace: TerraformWorkspace
) -> None:
    page = save(root, workspace, form_data(workspace, run_time_limit_seconds="0"))

    assert "Give at least one second" in page
    workspace.refresh_from_db()
    assert workspace.run_time_limit_seconds is None


def test_the_longest_time_limit_the_infra_workers_honour_is_saved(
    root: Client, workspace: TerraformWorkspace
) -> None:
    most = run_time_limit_max()
    url = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    response = root.post(url, form_data(workspace, run_time_limit_seconds=str(most)))

    assert response.status_code == 302, response.content.decode()[-2000:]
    workspace.refresh_from_db()
    assert workspace.run_time_limit_seconds == most


def test_a_default_time_limit_past_what_the_workers_honour_is_held_to_it(
    workspace: TerraformWorkspace, settings: Any
) -> None:
    settings.TERRAFORM_CANCEL_GRACE_SECONDS = 30
    settings.TERRAFORM_RUN_TIME_LIMIT_SECONDS = 86400
    # The infra queue's soft limit (10,500 s) less the grace and 120 s of the step's own.
    assert run_time_limit_max() == 10350
    assert run_time_limit(workspace) == 10350
    settings.TERRAFORM_CANCEL_GRACE_SECONDS = 60
    assert run_time_limit(workspace) == 10320
    settings.TERRAFORM_RUN_TIME_LIMIT_SECONDS = 3600
    assert run_time_limit(workspace) == 3600
