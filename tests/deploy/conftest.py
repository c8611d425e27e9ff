"""Loaders for the deploy artefacts: the CloudFormation template, the compose file and the
.env.example, parsed the way their tools read them."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from cfnlint.decode import cfn_yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "deploy" / "cloudformation" / "opsqueue.yaml"
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"

# Set only where the AWS endpoint is local and media stays on disk (compose).
DEV_ONLY_VARIABLES = {
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_SQS",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "DJANGO_MEDIA_ROOT",
}

# Variables that belong to one role only; every other variable is set for every role.
ROLE_VARIABLES = {
    "web": {"WEB_CONCURRENCY"},
    "worker": {"CELERY_WORKER_CONCURRENCY"},
    "beat": set(),
    "flower": set(),
    "release": {"RELEASE_VERSION"},
}


class Template:
    """The CloudFormation template, with intrinsic functions as {"Ref": ...} mappings."""

    def __init__(self, path: Path) -> None:
        self.data: dict[str, Any] = cfn_yaml.load(str(path))
        self.resources: dict[str, Any] = self.data["Resources"]
        self.parameters: dict[str, Any] = self.data["Parameters"]

    def of_type(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v["Type"] == type_}

    def props(self, logical_id: str) -> dict[str, Any]:
        return self.resources[logical_id]["Properties"]

    def container(self, task_definition: str) -> dict[str, Any]:
        (container,) = self.props(task_definition)["ContainerDefinitions"]
        return container

    def service_task_definition(self, service: str) -> str:
        return self.props(service)["TaskDefinition"]["Ref"]

    def services_running(self, role: str) -> dict[str, list[str]]:
        """ECS services whose container runs `start <role> ...`, with the role's arguments."""
        found = {}
        for service in self.of_type("AWS::ECS::Service"):
            command = self.container(self.service_task_definition(service))["Command"]
            if command[0] == role:
                found[service] = list(command[1:])
        return found

    def scalable_target_for(self, service: str) -> str | None:
        for target_id, target in self.of_type(
            "AWS::ApplicationAutoScaling::ScalableTarget"
        ).items():
            if f"${{{service}.Name}}" in target["Properties"]["ResourceId"]["Fn::Sub"]:
                return target_id
        return None

    def policies_for(self, scalable_target: str) -> list[dict[str, Any]]:
        return [
            policy["Properties"]
            for policy in self.of_type("AWS::ApplicationAutoScaling::ScalingPolicy").values()
            if policy["Properties"]["ScalingTargetId"] == {"Ref": scalable_target}
        ]


def queue_base_name(queue_name: Any) -> str:
    """`!Sub ${QueuePrefix}media` -> `media`: the Celery queue name without the prefix."""
    sub = queue_name["Fn::Sub"]
    assert sub.startswith("${QueuePrefix}"), sub
    return sub.removeprefix("${QueuePrefix}")


def variable_names(container: dict[str, Any]) -> set[str]:
    return {e["Name"] for e in container.get("Environment", [])} | {
        s["Name"] for s in container.get("Secrets", [])
    }


def env_example_names() -> set[str]:
    return set(re.findall(r"^([A-Z][A-Z0-9_]*)=", ENV_EXAMPLE.read_text(), flags=re.MULTILINE))


@pytest.fixture(scope="module")
def template() -> Template:
    return Template(TEMPLATE)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())
