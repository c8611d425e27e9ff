"""The environment the template and the compose file give the containers is one the
project's settings accept: Django's deployment checks pass with the production values, and
kombu gets the account's real queue URLs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

from tests.deploy.conftest import ROOT, Template

# Stand-ins for what CloudFormation resolves at deploy time.
DEPLOYED = {
    "DomainName": "ops.example.com",
    "QueuePrefix": "opsqueue-",
    "ImageTag": "abc123",
    "ReleaseImageTag": "abc123",
    "AWS::Region": "eu-west-1",
    "AWS::URLSuffix": "amazonaws.com",
    "AWS::AccountId": "123456789012",
    "Database.Endpoint.Address": "opsqueue.abcdefgh.eu-west-1.rds.amazonaws.com",
    "Database.Endpoint.Port": "5432",
    "Redis.RedisEndpoint.Address": "opsqueue.cache.amazonaws.com",
    "Redis.RedisEndpoint.Port": "6379",
    "MediaBucket": "opsqueue-prod-mediabucket-1a2b3c",
    "Cluster": "opsqueue-prod-Cluster-1a2b3c",
    "TerraformStateBucket": "opsqueue-prod-terraformstatebucket-1a2b3c",
    "TerraformStatePrefix": "state",
    "TerraformPlanPrefix": "plans",
}
SECRETS = {
    "DJANGO_SECRET_KEY": "k" * 20 + "-long-random-generated-by-secrets-manager-" + "x" * 20,
    "DATABASE_PASSWORD": "generated",
}


def resolve(value: Any) -> str:
    if isinstance(value, str):
        return value
    if "Ref" in value:
        return DEPLOYED[value["Ref"]]
    return re.sub(r"\$\{([^}]+)\}", lambda m: DEPLOYED[m.group(1)], value["Fn::Sub"])


def settings_report(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "SQS_", "AWS_"))}
    clean.pop("DATABASE_URL", None)
    return subprocess.run(
        [sys.executable, "manage.py", *command],
        env={**clean, **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )


REPORT = (
    "from django.conf import settings; from workers.broker import predefined_queues; "
    "import json; db = settings.DATABASES['default']; print(json.dumps({"
    "'queues': predefined_queues(), 'host': db['HOST'], 'password': db['PASSWORD'], "
    "'options': db.get('OPTIONS', {}), 'debug': settings.DEBUG}))"
)


def test_the_production_environment_passes_djangos_deployment_checks(
    template: Template,
) -> None:
    container = template.container("WebTaskDefinition")
    env = {e["Name"]: resolve(e["Value"]) for e in container["Environment"]}
    env |= {s["Name"]: SECRETS[s["Name"]] for s in container["Secrets"]}

    check = settings_report(env, "check", "--deploy", "--fail-level", "WARNING")
    assert check.returncode == 0, check.stdout + check.stderr

    shell = settings_report(env, "shell", "-c", REPORT)
    assert shell.returncode == 0, shell.stderr
    report = json.loads(shell.stdout.strip().splitlines()[-1])
    assert report["debug"] is False
    assert report["host"] == DEPLOYED["Database.Endpoint.Address"]
    assert report["password"] == SECRETS["DATABASE_PASSWORD"]
    # The URL's sslmode, beside the timeouts every PostgreSQL connection gets.
    assert report["options"] == {
        "sslmode": "require",
        "connect_timeout": 10,
        "keepalives": 1,
        "keepalives_idle": 30,
        "keepalives_interval": 10,
        "keepalives_count": 3,
    }
    # The URL format AWS gives these queues, so kombu never has to look them up.
    assert report["queues"]["opsqueue-infra"] == {
        "url": "https://sqs.eu-west-1.amazonaws.com/123456789012/opsqueue-infra"
    }


def test_the_compose_environment_is_accepted_by_the_settings(compose: dict[str, Any]) -> None:
    env = {
        name: re.sub(r"\$\{([A-Z_]+)(:[-?][^}]*)?\}", "from-the-shell", str(value))
        for name, value in compose["services"]["web"]["environment"].items()
    }
    check = settings_report(env, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    shell = settings_report(env, "shell", "-c", REPORT)
    assert shell.returncode == 0, shell.stderr
    assert json.loads(shell.stdout.strip().splitlines()[-1])["queues"]["opsqueue-default"] == {
        "url": "http://aws:5000/123456789012/opsqueue-default"
    }
