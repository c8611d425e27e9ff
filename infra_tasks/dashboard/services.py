"""Writes for the dashboard: the ECS snapshot, refreshed by a worker on a schedule
(jobs.ECS_SERVICES_REFRESH, declared with its schedule in infra_tasks/dashboard/jobs.py)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from infra_tasks.dashboard.models import EcsServiceSnapshot

DESCRIBE_BATCH = 10  # DescribeServices takes at most ten services per call


def ecs_client() -> Any:
    import boto3

    return boto3.client("ecs", region_name=settings.AWS_REGION)


def ecs_services_refresh(*, cluster: str | None = None, client: Any = None) -> dict[str, Any]:
    """Read the cluster's services from ECS and replace the snapshot with what was read."""
    cluster = settings.ECS_CLUSTER if cluster is None else cluster
    if not cluster:
        return {"cluster": None, "services": 0}
    client = client if client is not None else ecs_client()
    arns: list[str] = []
    for page in client.get_paginator("list_services").paginate(cluster=cluster):
        arns.extend(page["serviceArns"])
    described: list[dict[str, Any]] = []
    for i in range(0, len(arns), DESCRIBE_BATCH):
        response = client.describe_services(cluster=cluster, services=arns[i : i + DESCRIBE_BATCH])
        # A deleted service is INACTIVE for a while before ECS forgets it: it is gone.
        described.extend(s for s in response["services"] if s.get("status") != "INACTIVE")
    now = timezone.now()
    with transaction.atomic():
        for service in described:
            EcsServiceSnapshot.objects.update_or_create(
                cluster=cluster,
                service_name=service["serviceName"],
                defaults={
                    "status": service.get("status", ""),
                    "desired_count": service.get("desiredCount", 0),
                    "running_count": service.get("runningCount", 0),
                    "pending_count": service.get("pendingCount", 0),
                    "refreshed_at": now,
                },
            )
        # Services deleted in ECS leave the dashboard too.
        EcsServiceSnapshot.objects.filter(cluster=cluster).exclude(
            service_name__in=[s["serviceName"] for s in described]
        ).delete()
    return {"cluster": cluster, "services": len(described)}
