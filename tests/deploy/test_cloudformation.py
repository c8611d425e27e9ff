"""The CloudFormation template is lint-clean and agrees with the project: its queues, their
timeouts and redrive with workers/queues.py, its containers with the start script and the
settings, its permissions with what each process does."""

from __future__ import annotations

import fnmatch
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import override_settings
from django.urls import reverse

from infra_tasks.terraform import remote
from tests.deploy.conftest import (
    ROLE_VARIABLES,
    ROOT,
    Template,
    env_example_names,
    queue_base_name,
    variable_names,
)
from workers.broker import dead_letter_queue_name, sqs_queue_name
from workers.celery import app
from workers.management.commands.sqs_queues import MAX_RECEIVE_COUNT
from workers.queues import QUEUES

TEMPLATES = sorted((ROOT / "deploy" / "cloudformation").glob("*.yaml"))
APP_ROLES = set(ROLE_VARIABLES)
IMAGE = "${ImageRepository}:${ImageTag}"
RELEASE_IMAGE = "${ImageRepository}:${ReleaseImageTag}"


def queues_by_name(template: Template) -> dict[str, tuple[str, dict]]:
    return {
        queue_base_name(props["Properties"]["QueueName"]): (logical_id, props["Properties"])
        for logical_id, props in template.of_type("AWS::SQS::Queue").items()
    }


def worker_queues(template: Template) -> dict[str, str]:
    """Celery queue name -> the worker service consuming it."""
    consumed: dict[str, str] = {}
    for service, (queues,) in template.services_running("worker").items():
        for queue in queues.split(","):
            assert queue not in consumed, f"{queue} consumed by {consumed[queue]} and {service}"
            consumed[queue] = service
    return consumed


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_is_cfn_lint_clean(path: Path) -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    # Informational checks too: stateful resources state their deletion policies.
    result = subprocess.run(
        [cfn_lint, "--include-checks", "I", "--", str(path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_one_sqs_queue_per_celery_queue_with_the_same_visibility_timeout(
    template: Template,
) -> None:
    queues = {n: q for n, q in queues_by_name(template).items() if not n.endswith("-dlq")}
    assert set(queues) == set(QUEUES) == {q.name for q in app.conf.task_queues}
    for name, (_, props) in queues.items():
        assert props["VisibilityTimeout"] == settings.SQS_VISIBILITY_TIMEOUT_SECONDS == 90, name
        # The template's names are the ones the app computes from the same prefix.
        prefixed = props["QueueName"]["Fn::Sub"].replace(
            "${QueuePrefix}", settings.SQS_QUEUE_PREFIX
        )
        assert prefixed == sqs_queue_name(name)


def test_every_queue_dead_letters_to_its_own_dlq_after_the_same_receive_count_as_dev(
    template: Template,
) -> None:
    by_name = queues_by_name(template)
    logical_ids = {logical_id: name for name, (logical_id, _) in by_name.items()}
    for name in QUEUES:
        _, props = by_name[name]
        redrive = props["RedrivePolicy"]
        assert redrive["maxReceiveCount"] == MAX_RECEIVE_COUNT
        dlq_logical_id, attribute = redrive["deadLetterTargetArn"]["Fn::GetAtt"]
        assert attribute == "Arn"
        dlq_name = logical_ids[dlq_logical_id]
        assert sqs_queue_name(dlq_name) == dead_letter_queue_name(name)
        # A dead letter keeps its original enqueue time: the DLQ must retain it longer.
        dlq_props = by_name[dlq_name][1]
        assert dlq_props["MessageRetentionPeriod"] > props["MessageRetentionPeriod"]


def test_every_queue_has_exactly_one_worker_service_and_no_worker_reads_an_unknown_queue(
    template: Template,
) -> None:
    assert set(worker_queues(template)) == set(QUEUES)


def test_every_worker_container_is_replaced_when_its_consumer_stops_receiving(
    template: Template,
) -> None:
    for service in template.services_running("worker"):
        container = template.container(template.service_task_definition(service))
        check = container["HealthCheck"]
        assert check["Command"] == ["CMD", "python", "-m", "workers.liveness"]
        # Failing for retries x interval: longer than the worker's own exit deadline would take.
        assert check["Retries"] * check["Interval"] >= 60


def test_workers_use_predefined_queues_at_the_accounts_sqs_url(template: Template) -> None:
    for role in APP_ROLES:
        for service in template.services_running(role):
            container = template.container(template.service_task_definition(service))
            env = {e["Name"]: e["Value"] for e in container["Environment"]}
            assert env["CELERY_BROKER_URL"] == "sqs://"
            assert env["SQS_QUEUE_PREFIX"] == {"Ref": "QueuePrefix"}
            assert env["SQS_QUEUE_URL_BASE"] == {
                "Fn::Sub": "https://sqs.${AWS::Region}.${AWS::URLSuffix}/${AWS::AccountId}/"
            }


def test_worker_scaling_tracks_messages_per_running_task_of_its_own_queue(
    template: Template,
) -> None:
    cluster = template.props("Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["ClusterSettings"]
    by_name = queues_by_name(template)
    scaled = 0
    for queue, service in worker_queues(template).items():
        target = template.scalable_target_for(service)
        if target is None:
            assert queue == "release", f"{service} is not scaled"
            continue
        scaled += 1
        (policy,) = template.policies_for(target)
        assert policy["PolicyType"] == "TargetTrackingScaling"
        config = policy["TargetTrackingScalingPolicyConfiguration"]
        metrics = {m["Id"]: m for m in config["CustomizedMetricSpecification"]["Metrics"]}
        for metric_id, name in (
            ("visible", "ApproximateNumberOfMessagesVisible"),
            ("in_flight", "ApproximateNumberOfMessagesNotVisible"),
        ):
            sqs = metrics[metric_id]["MetricStat"]["Metric"]
            assert (sqs["Namespace"], sqs["MetricName"]) == ("AWS/SQS", name)
            assert sqs["Dimensions"] == [
                {"Name": "QueueName", "Value": {"Fn::GetAtt": [by_name[queue][0], "QueueName"]}}
            ]
        tasks = metrics["tasks"]["MetricStat"]["Metric"]
        assert (tasks["Namespace"], tasks["MetricName"]) == (
            "ECS/ContainerInsights",
            "RunningTaskCount",
        )
        assert {"Name": "ServiceName", "Value": {"Fn::GetAtt": [service, "Name"]}} in tasks[
            "Dimensions"
        ]
        returned = [m for m in metrics.values() if m["ReturnData"]]
        assert [m["Expression"] for m in returned] == ["(visible + in_flight) / tasks"]
    assert scaled == len(QUEUES) - 1


def test_web_scales_on_requests_per_target_behind_a_health_check_of_healthz(
    template: Template,
) -> None:
    (web,) = template.services_running("web")
    (policy,) = template.policies_for(template.scalable_target_for(web) or "")
    metric = policy["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]
    assert metric["PredefinedMetricType"] == "ALBRequestCountPerTarget"
    (binding,) = template.props(web)["LoadBalancers"]
    target_group = template.props(binding["TargetGroupArn"]["Ref"])
    assert target_group["HealthCheckPath"] == reverse("healthz") == "/healthz/"
    assert target_group["Matcher"] == {"HttpCode": "200"}
    assert binding["ContainerPort"] == target_group["Port"] == 8000


def test_beat_runs_exactly_one_task_even_during_a_deployment(template: Template) -> None:
    (beat,) = template.services_running("beat")
    props = template.props(beat)
    count = template.parameters[props["DesiredCount"]["Ref"]]
    assert count["Default"] == 1 and set(count["AllowedValues"]) == {0, 1}
    assert props["DeploymentConfiguration"]["MaximumPercent"] == 100
    assert props["DeploymentConfiguration"]["MinimumHealthyPercent"] == 0
    assert template.scalable_target_for(beat) is None


def test_flower_is_private_and_keeps_no_login_of_its_own(template: Template) -> None:
    (flower,) = template.services_running("flower")
    props = template.props(flower)
    assert "LoadBalancers" not in props
    network = props["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    for group in network["SecurityGroups"]:
        for rule in template.props(group["Ref"]).get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") == {"Ref": "OperatorCidr"}
    # Its logins are the Django accounts (workers/flower_accounts.py).
    container = template.container(template.service_task_definition(flower))
    assert "FLOWER_BASIC_AUTH" not in {s["Name"] for s in container["Secrets"]}
    assert "FlowerBasicAuth" not in template.parameters


def test_the_release_task_runs_the_release_command_for_the_release_image_tag(
    template: Template,
) -> None:
    container = template.container("ReleaseTaskDefinition")
    assert container["Command"] == ["release"]
    assert {"Name": "RELEASE_VERSION", "Value": {"Ref": "ReleaseImageTag"}} in container[
        "Environment"
    ]
    # The worker that migrates runs the code of the release it migrates for.
    (release_worker,) = [
        s for s, (q,) in template.services_running("worker").items() if q == "release"
    ]
    worker = template.container(template.service_task_definition(release_worker))
    assert container["Image"] == worker["Image"] == {"Fn::Sub": RELEASE_IMAGE}
    # No service runs it: it is a one-off, started once per release.
    for service in template.of_type("AWS::ECS::Service"):
        assert template.service_task_definition(service) != "ReleaseTaskDefinition"


def test_every_app_container_gets_the_same_settings_from_one_image(template: Template) -> None:
    shared: set[str] | None = None
    for logical_id in template.of_type("AWS::ECS::TaskDefinition"):
        container = template.container(logical_id)
        role = container["Command"][0]
        assert role in APP_ROLES, logical_id
        releasing = logical_id in {"ReleaseTaskDefinition", "ReleaseWorkerTaskDefinition"}
        assert container["Image"] == {"Fn::Sub": RELEASE_IMAGE if releasing else IMAGE}
        names = variable_names(container) - ROLE_VARIABLES[role]
        shared = names if shared is None else shared
        assert names == shared, logical_id
        assert ROLE_VARIABLES[role] <= variable_names(container), logical_id
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
    assert shared is not None
    assert shared | set().union(*ROLE_VARIABLES.values()) <= env_example_names()


def test_secrets_are_injected_by_reference_never_as_plain_values(template: Template) -> None:
    secret_resources = set(template.of_type("AWS::SecretsManager::Secret"))
    for logical_id in template.of_type("AWS::ECS::TaskDefinition"):
        container = template.container(logical_id)
        for entry in container["Environment"]:
            assert not any(
                word in entry["Name"] for word in ("SECRET", "PASSWORD", "AUTH", "TOKEN")
            ), entry["Name"]
        for secret in container["Secrets"]:
            reference = secret["ValueFrom"]
            referenced = reference.get("Ref") or reference["Fn::Sub"].split("}")[0][2:]
            assert referenced in secret_resources, secret
    database = template.props("Database")
    assert database["MasterUserPassword"]["Fn::Sub"].startswith("{{resolve:secretsmanager:")
    for name, parameter in template.parameters.items():
        if any(word in name for word in ("Auth", "Password", "Secret")) and name != (
            "TerraformSecretsPrefix"
        ):
            assert parameter.get("NoEcho") is True, name


def test_the_database_leaves_a_snapshot_on_delete_or_replacement(template: Template) -> None:
    database = template.resources["Database"]
    assert database["DeletionPolicy"] == database["UpdateReplacePolicy"] == "Snapshot"
    assert database["Properties"]["PubliclyAccessible"] is False
    assert database["Properties"]["StorageEncrypted"] is True


def test_the_media_bucket_is_private(template: Template) -> None:
    bucket = template.props("MediaBucket")
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    assert len(bucket["PublicAccessBlockConfiguration"]) == 4


def _statements(role: dict) -> list[dict]:
    return [
        statement
        for policy in role["Properties"].get("Policies", [])
        for statement in policy["PolicyDocument"]["Statement"]
    ]


def _actions(statement: dict) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_only_the_infra_worker_may_start_or_stop_databases_and_only_tagged_ones(
    template: Template,
) -> None:
    roles = template.of_type("AWS::IAM::Role")
    for logical_id, role in roles.items():
        for statement in _statements(role):
            changing = [a for a in _actions(statement) if a.startswith(("rds:Start", "rds:Stop"))]
            if not changing:
                continue
            assert logical_id == "InfraWorkerTaskRole"
            condition = statement["Condition"]["StringEquals"]
            assert list(condition) == ["aws:ResourceTag/opsqueue:managed"]


def test_each_worker_reads_only_its_own_queue_and_nothing_grants_every_action(
    template: Template,
) -> None:
    by_name = queues_by_name(template)
    roles = template.of_type("AWS::IAM::Role")
    for queue, service in worker_queues(template).items():
        task_definition = template.props(template.service_task_definition(service))
        role_id = task_definition["TaskRoleArn"]["Fn::GetAtt"][0]
        received = [
            statement["Resource"]
            for statement in _statements(roles[role_id])
            if "sqs:ReceiveMessage" in _actions(statement)
        ]
        assert received == [{"Fn::GetAtt": [by_name[queue][0], "Arn"]}], service
    for logical_id, role in roles.items():
        for statement in _statements(role):
            assert not any(a == "*" or a.endswith(":*") for a in _actions(statement)), logical_id
    for logical_id in ("WebTaskRole", "FlowerTaskRole", "EnqueueOnlyTaskRole"):
        assert not any(
            "sqs:ReceiveMessage" in _actions(s) for s in _statements(roles[logical_id])
        ), logical_id


def _sub(value: Any, parameters: dict[str, str]) -> str:
    """A `!Sub` string with the given parameters and the bucket's ARN filled in."""
    text = value["Fn::Sub"] if isinstance(value, dict) else value
    for name, replacement in parameters.items():
        text = text.replace("${" + name + "}", replacement)
    return str(text)


def test_the_terraform_state_bucket_is_versioned_encrypted_private_and_retained(
    template: Template,
) -> None:
    resource = template.resources["TerraformStateBucket"]
    assert resource["DeletionPolicy"] == resource["UpdateReplacePolicy"] == "Retain"
    bucket = resource["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    (encryption,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] in ("AES256", "aws:kms")
    block = bucket["PublicAccessBlockConfiguration"]
    assert len(block) == 4 and all(block.values())
    (tls_only,) = template.props("TerraformStateBucketPolicy")["PolicyDocument"]["Statement"]
    assert template.props("TerraformStateBucketPolicy")["Bucket"] == {"Ref": "TerraformStateBucket"}
    assert (tls_only["Effect"], tls_only["Action"]) == ("Deny", "s3:*")
    assert tls_only["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}


def test_containers_get_the_state_bucket_and_prefixes_with_the_settings_defaults(
    template: Template,
) -> None:
    for logical_id in template.of_type("AWS::ECS::TaskDefinition"):
        env = {e["Name"]: e["Value"] for e in template.container(logical_id)["Environment"]}
        assert env["TERRAFORM_STATE_BUCKET"] == {"Ref": "TerraformStateBucket"}, logical_id
        assert env["TERRAFORM_STATE_PREFIX"] == {"Ref": "TerraformStatePrefix"}, logical_id
        assert env["TERRAFORM_PLAN_PREFIX"] == {"Ref": "TerraformPlanPrefix"}, logical_id
    parameters = template.parameters
    assert parameters["TerraformStatePrefix"]["Default"] == settings.TERRAFORM_STATE_PREFIX
    assert parameters["TerraformPlanPrefix"]["Default"] == settings.TERRAFORM_PLAN_PREFIX


def test_only_the_infra_worker_may_use_the_state_bucket_and_only_its_two_prefixes(
    template: Template,
) -> None:
    arn = "arn:aws:s3:::opsqueue-tf"
    values = {
        "TerraformStateBucket.Arn": arn,
        "TerraformStatePrefix": settings.TERRAFORM_STATE_PREFIX,
        "TerraformPlanPrefix": settings.TERRAFORM_PLAN_PREFIX,
    }
    granted: dict[str, list[dict]] = {}
    for logical_id, role in template.of_type("AWS::IAM::Role").items():
        for statement in _statements(role):
            if "TerraformStateBucket" in json.dumps(statement["Resource"]):
                granted.setdefault(logical_id, []).append(statement)
    for policy in template.of_type("AWS::IAM::ManagedPolicy").values():
        assert "TerraformStateBucket" not in json.dumps(policy), "granted to several roles"
    assert list(granted) == ["InfraWorkerTaskRole"]

    by_action = {tuple(_actions(s)): s for s in granted["InfraWorkerTaskRole"]}
    assert set(by_action) == {
        ("s3:GetObject", "s3:PutObject", "s3:DeleteObject"),
        ("s3:ListBucket",),
    }
    objects = [
        _sub(r, values)
        for r in by_action[("s3:GetObject", "s3:PutObject", "s3:DeleteObject")]["Resource"]
    ]
    listing = by_action[("s3:ListBucket",)]
    assert listing["Resource"] == {"Fn::GetAtt": ["TerraformStateBucket", "Arn"]}
    listed = [_sub(p, values) for p in listing["Condition"]["StringLike"]["s3:prefix"]]

    # Every key the workers use falls under the grants, and nothing else of the bucket does.
    with override_settings(TERRAFORM_STATE_BUCKET="opsqueue-tf"):
        keys = [
            remote.state_key("web"),
            remote.state_key("web") + remote.LOCK_SUFFIX,
            remote.plan_key("web", 12),
            remote.bundle_key("web", "0" * 64),
        ]
    for key in keys:
        assert any(fnmatch.fnmatchcase(f"{arn}/{key}", pattern) for pattern in objects), key
        assert any(fnmatch.fnmatchcase(key, pattern) for pattern in listed), key
    for elsewhere in ("media/cover.jpg", "other/web/terraform.tfstate"):
        assert not any(fnmatch.fnmatchcase(f"{arn}/{elsewhere}", p) for p in objects)
    assert len(objects) == len(listed) == 2


def test_the_infra_worker_container_has_an_init_to_reap_killed_children(
    template: Template,
) -> None:
    (service,) = [s for s, (q,) in template.services_running("worker").items() if q == "infra"]
    container = template.container(template.service_task_definition(service))
    assert container["LinuxParameters"]["InitProcessEnabled"] is True
