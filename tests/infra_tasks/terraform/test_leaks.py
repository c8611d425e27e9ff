"""No planted secret reaches storage: a real plan and apply, on a real worker, of a workspace
that prints its secrets in every form (each line of a PEM key from Secrets Manager; the
base64, URL-safe base64, URL-encoded and JSON-escaped forms of a token from SSM; an access
key id inside a SigV4 credential; a secret key inside a path) and hands them out as outputs
not declared sensitive. Then every text column of every table, and a full pg_dump, are
searched for each form."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import urllib.parse
import uuid
from collections.abc import Callable

from django.contrib.auth import get_user_model
from django.db import connection

from infra_tasks.terraform.cli import SENSITIVE_OUTPUT
from infra_tasks.terraform.models import (
    RunKind,
    RunState,
    SecretSource,
    TerraformRun,
    TerraformSecret,
    TerraformWorkspace,
)
from infra_tasks.terraform.services.runs import run_approve, run_request
from tests.support.servers import AwsEndpoint, WorkerProcess, wait_until
from workers.enqueue import Requester
from workers.redaction import MASK
from workers.selectors import job_log_since

MakeWorkspace = Callable[..., TerraformWorkspace]
KEY_ID = "AKIAZ7PLANTED0KEY1DX"
SECRET_KEY = "Pl4nted/SecretKey+NotInAnyList0123456789"


def planted_pem() -> str:
    body = base64.b64encode(os.urandom(144)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join(["-----BEGIN RSA PRIVATE KEY-----", *lines, "-----END RSA PRIVATE KEY-----"])


def forms_of(token: str, pem: str) -> dict[str, str]:
    raw = token.encode()
    return {
        "token": token,
        "token base64": base64.b64encode(raw).decode().rstrip("="),
        "token base64 url-safe": base64.urlsafe_b64encode(raw).decode().rstrip("="),
        "token URL-encoded": urllib.parse.quote(token, safe=""),
        "token JSON-escaped": json.dumps(token)[1:-1],
        **{f"PEM line {n}": line for n, line in enumerate(pem.splitlines()[1:-1])},
        "access key id": KEY_ID,
        "secret key": SECRET_KEY,
    }


def text_columns() -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' "
            "AND data_type IN ('text', 'character varying', 'jsonb', 'json', 'bytea')"
        )
        return list(cursor.fetchall())


def found_in_columns(forms: dict[str, str]) -> list[str]:
    found = []
    with connection.cursor() as cursor:
        for table, column in text_columns():
            for label, form in forms.items():
                # Names from the catalogue, the form as a parameter.
                cursor.execute(
                    f'SELECT count(*) FROM "{table}" WHERE strpos("{column}"::text, %s) > 0',
                    [form],
                )
                if cursor.fetchone()[0]:
                    found.append(f"{label} in {table}.{column}")
    return found


def found_in_dump(forms: dict[str, str]) -> list[str]:
    db = connection.settings_dict
    dump = subprocess.run(
        [
            "pg_dump",
            "--data-only",
            "-h",
            db["HOST"],
            "-p",
            str(db["PORT"] or 5432),
            "-U",
            db["USER"],
            db["NAME"],
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PGPASSWORD": db["PASSWORD"] or ""},
    ).stdout
    # COPY's text format doubles each backslash: look for both spellings.
    return [
        label for label, form in forms.items() if form in dump or form.replace("\\", "\\\\") in dump
    ]


def test_no_form_of_a_planted_secret_is_stored_anywhere(
    worker: WorkerProcess, aws: AwsEndpoint, make_workspace: MakeWorkspace
) -> None:
    token = f"tok-Ünï/{uuid.uuid4().hex[:12]}+secret?&="
    pem = planted_pem()
    suffix = uuid.uuid4().hex[:8]
    aws.client("ssm").put_parameter(
        Name=f"/opsqueue/terraform/leak-{suffix}/token",
        Value=token,
        Type="SecureString",
        Overwrite=True,
    )
    aws.client("secretsmanager").create_secret(
        Name=f"opsqueue/terraform/leak-{suffix}/pem", SecretString=pem
    )
    workspace = make_workspace("leaky")
    TerraformSecret.objects.create(
        workspace=workspace,
        variable="api_token",
        source=SecretSource.SSM,
        reference=f"/opsqueue/terraform/leak-{suffix}/token",
    )
    TerraformSecret.objects.create(
        workspace=workspace,
        variable="pem_key",
        source=SecretSource.SECRETS_MANAGER,
        reference=f"opsqueue/terraform/leak-{suffix}/pem",
    )
    operator = get_user_model().objects.create_user("operator", is_staff=True)

    run = run_request(
        workspace=workspace, kind=RunKind.APPLY, requester=Requester.for_user(operator)
    )
    wait_until(
        lambda: TerraformRun.objects.get(pk=run.pk).state in (RunState.PLANNED, RunState.FAILED),
        timeout=120,
        message="the plan",
    )
    run.refresh_from_db()
    assert run.state == RunState.PLANNED, run.message
    run_approve(run=run, user=operator)
    wait_until(
        lambda: TerraformRun.objects.get(pk=run.pk).state in (RunState.APPLIED, RunState.FAILED),
        timeout=120,
        message="the apply",
    )
    run.refresh_from_db()
    assert run.state == RunState.APPLIED, run.message

    # The job ran and its lines were stored, masked.
    lines = job_log_since(task_id=run.apply_task_id, max_chunks=10_000).lines
    assert any("b64 [REDACTED]" in line for line in lines), lines
    assert any("Credential=[REDACTED]/20261203" in line for line in lines), lines
    workspace.refresh_from_db()
    assert workspace.outputs["token_sealed"] == SENSITIVE_OUTPUT
    assert workspace.outputs["token_in_the_clear"] == MASK
    assert workspace.outputs["credentials"] == {"id": MASK, "path": f"keys/{MASK}/x"}

    forms = forms_of(token, pem)
    assert not found_in_columns(forms)
    assert not found_in_dump(forms)
