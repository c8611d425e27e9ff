"""Demo data for the dev stack: an RDS instance, an Aurora cluster and an ECS service in the
local AWS endpoint, the two databases registered with a nightly stop / morning start.

Runs on every `make run` (the endpoint is new each time, the Django database may not be).
"""

from __future__ import annotations

import secrets
from datetime import time
from typing import Any, TextIO

import boto3
from botocore.exceptions import ClientError
from django.conf import settings
from django.db import transaction

from infra_tasks.dashboard.jobs import ECS_SERVICES_REFRESH
from infra_tasks.rds.models import ActionKind, DatabaseKind, ManagedDatabase
from infra_tasks.rds.services.actions import database_action_request
from infra_tasks.rds.services.schedules import DatabaseSchedule, managed_database_save
from workers.enqueue import Requester, job_enqueue

DEMO_SCHEDULE = DatabaseSchedule(
    time_zone="Europe/Warsaw",
    stop_at=time(22, 0),
    stop_days="*",
    start_at=time(7, 0),
    start_days="1-5",
)
DEMO_DATABASES = (
    ("demo-postgres", DatabaseKind.INSTANCE, "opsqueue-demo-postgres"),
    ("demo-aurora", DatabaseKind.CLUSTER, "opsqueue-demo-aurora"),
)
DEMO_ECS_SERVICES = (("web", 2), ("worker", 3), ("worker-infra", 1))


def seed(*, stdout: TextIO) -> None:
    region = settings.AWS_REGION
    rds = boto3.client("rds", region_name=region)
    _ensure_instance(rds, "opsqueue-demo-postgres")
    _ensure_cluster(rds, "opsqueue-demo-aurora")
    if settings.ECS_CLUSTER:
        _ensure_ecs(boto3.client("ecs", region_name=region), settings.ECS_CLUSTER)

    requester = Requester.cli("devstack_setup")
    with transaction.atomic():
        for name, kind, identifier in DEMO_DATABASES:
            database = ManagedDatabase.objects.filter(name=name).first()
            if database is None:
                database = managed_database_save(
                    database=ManagedDatabase(
                        name=name, kind=kind, identifier=identifier, region=region
                    ),
                    schedule=DEMO_SCHEDULE,
                )
            # Read its state now rather than at the first enforcement pass.
            database_action_request(
                database=database, action=ActionKind.REFRESH, requester=requester
            )
        job_enqueue(ECS_SERVICES_REFRESH, requester=requester)
    stdout.write(
        "managed databases ready: demo-postgres, demo-aurora (stop 22:00, start 07:00 Mon-Fri,"
        f" Europe/Warsaw); dashboard at /ops/infrastructure/ (ECS cluster {settings.ECS_CLUSTER!r})"
    )


def _ensure_instance(rds: Any, identifier: str) -> None:
    if _exists(lambda: rds.describe_db_instances(DBInstanceIdentifier=identifier)):
        return
    rds.create_db_instance(
        DBInstanceIdentifier=identifier,
        DBInstanceClass="db.t4g.micro",
        Engine="postgres",
        AllocatedStorage=20,
        MasterUsername="opsqueue",
        # The local endpoint keeps nothing; a throwaway value, never printed or stored.
        MasterUserPassword=secrets.token_urlsafe(16),
    )


def _ensure_cluster(rds: Any, identifier: str) -> None:
    if _exists(lambda: rds.describe_db_clusters(DBClusterIdentifier=identifier)):
        return
    rds.create_db_cluster(
        DBClusterIdentifier=identifier,
        Engine="aurora-postgresql",
        MasterUsername="opsqueue",
        MasterUserPassword=secrets.token_urlsafe(16),
    )


def _ensure_ecs(ecs: Any, cluster: str) -> None:
    ecs.create_cluster(clusterName=cluster)
    existing = set()
    for page in ecs.get_paginator("list_services").paginate(cluster=cluster):
        existing |= {arn.rsplit("/", 1)[-1] for arn in page["serviceArns"]}
    for service, count in DEMO_ECS_SERVICES:
        if service in existing:
            continue
        definition = ecs.register_task_definition(
            family=f"opsqueue-{service}",
            containerDefinitions=[{"name": service, "image": "opsqueue:dev", "memory": 512}],
        )["taskDefinition"]["taskDefinitionArn"]
        ecs.create_service(
            cluster=cluster, serviceName=service, taskDefinition=definition, desiredCount=count
        )
        # The local endpoint starts no containers: a new service stays at 0 running, which
        # the dashboard rightly shows as behind. Its update marks the desired tasks running,
        # so the demo shows what a rolled-out service looks like.
        ecs.update_service(cluster=cluster, service=service, desiredCount=count)


def _exists(describe: Any) -> bool:
    try:
        describe()
    except ClientError as exc:
        if exc.response["Error"]["Code"] in {"DBInstanceNotFound", "DBClusterNotFoundFault"}:
            return False
        raise
    return True
