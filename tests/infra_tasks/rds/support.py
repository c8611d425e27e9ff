"""Databases in the local AWS endpoint (moto_server) and their registration, for tests."""

from __future__ import annotations

import uuid
from datetime import time

from infra_tasks.rds.models import FINISHED_ACTION_STATES, DatabaseAction, ManagedDatabase
from infra_tasks.rds.services.schedules import DatabaseSchedule, managed_database_save
from tests.support.servers import AwsEndpoint, wait_until

SCHEDULE = DatabaseSchedule(time_zone="Europe/Warsaw", stop_at=time(22, 0), start_at=time(7, 0))


def new_instance(aws: AwsEndpoint, *, replica_of: str | None = None) -> str:
    identifier = f"db-{uuid.uuid4().hex[:10]}"
    rds = aws.client("rds")
    if replica_of:
        rds.create_db_instance_read_replica(
            DBInstanceIdentifier=identifier, SourceDBInstanceIdentifier=replica_of
        )
    else:
        rds.create_db_instance(
            DBInstanceIdentifier=identifier,
            DBInstanceClass="db.t4g.micro",
            Engine="postgres",
            AllocatedStorage=20,
            MasterUsername="admin1",
            MasterUserPassword=uuid.uuid4().hex,
        )
    return identifier


def new_cluster(aws: AwsEndpoint) -> str:
    identifier = f"aurora-{uuid.uuid4().hex[:10]}"
    aws.client("rds").create_db_cluster(
        DBClusterIdentifier=identifier,
        Engine="aurora-postgresql",
        MasterUsername="admin1",
        MasterUserPassword=uuid.uuid4().hex,
    )
    return identifier


def aws_status(aws: AwsEndpoint, database: ManagedDatabase) -> str:
    rds = aws.client("rds")
    if database.kind == "cluster":
        return rds.describe_db_clusters(DBClusterIdentifier=database.identifier)["DBClusters"][0][
            "Status"
        ]
    return rds.describe_db_instances(DBInstanceIdentifier=database.identifier)["DBInstances"][0][
        "DBInstanceStatus"
    ]


def register(identifier: str, kind: str = "instance") -> ManagedDatabase:
    return managed_database_save(
        database=ManagedDatabase(
            name=identifier, kind=kind, identifier=identifier, region="us-east-1"
        ),
        schedule=SCHEDULE,
    )


def finished(action: DatabaseAction, timeout: float = 60) -> DatabaseAction:
    def done() -> bool:
        action.refresh_from_db()
        return action.state in FINISHED_ACTION_STATES

    wait_until(done, timeout=timeout, message=f"{action} to finish")
    return action
