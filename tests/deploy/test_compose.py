"""docker-compose.yml runs the same image and settings as production: every queue has a
worker, beat runs once, Flower needs a login and nothing is published beyond loopback."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from django.core.management import get_commands

from tests.deploy.conftest import (
    DEV_ONLY_VARIABLES,
    ROLE_VARIABLES,
    ROOT,
    Template,
    env_example_names,
    variable_names,
)
from tests.support.servers import AwsEndpoint
from workers.queues import QUEUES

IMAGE = "${OPSQUEUE_IMAGE:-opsqueue:dev}"


def app_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose["services"].items()
        if service.get("image") == IMAGE
    }


def running(compose: dict[str, Any], role: str) -> dict[str, list[str]]:
    return {
        name: service["command"][1:]
        for name, service in app_services(compose).items()
        if service["command"][0] == role
    }


def test_every_app_service_runs_the_one_image_built_from_the_deploy_dockerfile(
    compose: dict[str, Any],
) -> None:
    services = app_services(compose)
    assert {"web", "beat", "flower", "release"} <= set(services)
    for name, service in services.items():
        assert service["build"] == {"context": ".", "dockerfile": "deploy/Dockerfile"}, name
    others = set(compose["services"]) - set(services)
    assert others == {"postgres", "aws", "redis"}


def test_every_queue_has_exactly_one_worker_service(compose: dict[str, Any]) -> None:
    consumed: list[str] = []
    for (queues,) in running(compose, "worker").values():
        consumed += queues.split(",")
    assert sorted(consumed) == sorted(QUEUES)


def test_beat_runs_exactly_once(compose: dict[str, Any]) -> None:
    (beat,) = running(compose, "beat")
    service = compose["services"][beat]
    assert service.get("deploy", {}).get("replicas", 1) == 1
    assert "scale" not in service


def test_flower_signs_in_django_accounts_and_is_published_on_loopback_only(
    compose: dict[str, Any],
) -> None:
    (flower,) = running(compose, "flower")
    assert "FLOWER_BASIC_AUTH" not in compose["services"][flower].get("environment", {})
    assert compose["services"][flower]["ports"] == ["127.0.0.1:5555:5555"]


def test_nothing_is_published_beyond_loopback(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_migrations_run_only_from_the_one_off_release_service(compose: dict[str, Any]) -> None:
    assert running(compose, "release") == {"release": []}
    release = compose["services"]["release"]
    assert release["profiles"] == ["release"]  # `up` never starts it; `run` does
    assert release["restart"] == "no"
    assert "worker-release" in release["depends_on"]
    for name, service in app_services(compose).items():
        assert "migrate" not in service["command"], name


def test_queues_exist_before_any_app_service_starts(compose: dict[str, Any]) -> None:
    setup = compose["services"]["aws-setup"]
    assert setup["command"] == ["manage", "sqs_queues"]
    assert "sqs_queues" in get_commands()
    for name, service in app_services(compose).items():
        if name != "aws-setup":
            condition = service["depends_on"]["aws-setup"]["condition"]
            assert condition == "service_completed_successfully", name


def test_services_get_the_production_settings_variables(
    compose: dict[str, Any], template: Template
) -> None:
    production = {
        name
        for logical_id in template.of_type("AWS::ECS::TaskDefinition")
        for name in variable_names(template.container(logical_id))
    }
    role_only = set().union(*ROLE_VARIABLES.values())
    for name, service in app_services(compose).items():
        role = service["command"][0]
        names = set(service["environment"])
        if role in ROLE_VARIABLES:
            assert ROLE_VARIABLES[role] <= names, name
            names -= ROLE_VARIABLES[role]
        assert names - DEV_ONLY_VARIABLES == production - role_only, name
        assert set(service["environment"]) <= env_example_names(), name


def test_the_secret_key_has_no_default_in_the_compose_file(compose: dict[str, Any]) -> None:
    for name, service in app_services(compose).items():
        assert service["environment"]["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?"), name


def test_the_queue_url_base_is_where_the_local_sqs_server_puts_the_queues(
    compose: dict[str, Any], aws: AwsEndpoint
) -> None:
    env = compose["services"]["web"]["environment"]
    sqs = aws.client("sqs")
    name = f"{env['SQS_QUEUE_PREFIX']}compose-check"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    try:
        base = urlparse(env["SQS_QUEUE_URL_BASE"])
        assert urlparse(url).path == base.path + name
        assert f"{base.scheme}://{base.netloc}" == env["AWS_ENDPOINT_URL_SQS"]
    finally:
        sqs.delete_queue(QueueUrl=url)


def test_the_sqs_compatible_server_is_the_version_the_tests_run_against(
    compose: dict[str, Any],
) -> None:
    pins = dict(
        line.split(" ", 1)[0].split("==", 1)
        for line in (ROOT / "requirements" / "dev.txt").read_text().splitlines()
        if "==" in line
    )
    image, tag = compose["services"]["aws"]["image"].split(":")
    assert (image, tag) == ("motoserver/moto", pins["moto"])


def test_terraform_state_goes_to_the_local_endpoints_s3_bucket_made_before_the_infra_worker(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    env = services["worker-infra"]["environment"]
    assert env["TERRAFORM_STATE_BUCKET"] and env["AWS_ENDPOINT_URL"] == "http://aws:5000"
    setup = services["terraform-setup"]
    assert setup["command"] == ["manage", "terraform_state_bucket"] and setup["restart"] == "no"
    assert "terraform_state_bucket" in get_commands()
    condition = services["worker-infra"]["depends_on"]["terraform-setup"]["condition"]
    assert condition == "service_completed_successfully"
    assert services["worker-infra"]["init"] is True, "an init reaps killed local-exec children"


def test_web_and_the_infra_worker_see_the_same_configurations_read_only(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    for name in ("web", "worker-infra"):
        root = services[name]["environment"]["TERRAFORM_ROOT"]
        assert f"./terraform:{root}:ro" in services[name]["volumes"], name
