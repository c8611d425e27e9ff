"""The dev stack's demo data: databases in the local endpoint, registered with a schedule;
safe to run on every start."""

from __future__ import annotations

import io
from typing import Any

import pytest

from infra_tasks.dashboard.models import EcsServiceSnapshot
from infra_tasks.dashboard.services import ecs_services_refresh
from infra_tasks.rds import demo
from infra_tasks.rds.models import ManagedDatabase
from tests.infra_tasks.rds.support import aws_status
from tests.support.servers import AwsEndpoint

pytestmark = pytest.mark.django_db(transaction=True)


def test_demo_seed_creates_and_registers_databases_and_ecs_and_is_idempotent(
    sqs_queues: AwsEndpoint, settings: Any
) -> None:
    settings.ECS_CLUSTER = "demo-cluster"

    demo.seed(stdout=io.StringIO())
    demo.seed(stdout=io.StringIO())

    databases = {d.name: d for d in ManagedDatabase.objects.all()}
    assert set(databases) == {"demo-postgres", "demo-aurora"}
    for database in databases.values():
        assert database.stop_task is not None and database.start_task is not None
        assert aws_status(sqs_queues, database) == "available"
    assert databases["demo-aurora"].kind == "cluster"
    services = sqs_queues.client("ecs").list_services(cluster="demo-cluster")["serviceArns"]
    assert len(services) == len(demo.DEMO_ECS_SERVICES)
    # The dashboard reads what ECS says: the demo services are rolled out, not "behind".
    ecs_services_refresh(cluster="demo-cluster")
    snapshots = EcsServiceSnapshot.objects.filter(cluster="demo-cluster")
    assert [s.in_step for s in snapshots] == [True] * len(demo.DEMO_ECS_SERVICES)
    # Each start reads the databases' state at once (one refresh job per seed run).
    assert databases["demo-postgres"].actions.filter(action="refresh").count() == 2
