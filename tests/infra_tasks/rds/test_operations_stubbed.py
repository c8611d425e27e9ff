"""States and errors the local AWS endpoint cannot produce, on the real boto3 client.

moto moves a database from one state to the next at once and never throttles, so the
transitional states (backing-up, modifying, upgrading, maintenance, starting while asked to
stop) and throttling are played by botocore's Stubber here, for these cases alone.
Everything else runs against moto_server and a real worker (test_actions.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from infra_tasks.rds.models import ActionState, DatabaseAction, ManagedDatabase
from infra_tasks.rds.operations import Limits, Operator, StillTransitional, Target, WaitTimedOut
from infra_tasks.rds.services.actions import database_action_execute
from workers.logsink import LineCapture
from workers.selectors import job_log_since

LIMITS = Limits(
    retry_attempts=4,
    retry_base_seconds=1.0,
    retry_max_seconds=3.0,
    throttle_attempts=3,
    poll_seconds=10.0,
    wait_timeout_seconds=60.0,
)


class FakeTime:
    """Sleeps advance a clock instead of waiting: the waits are asserted, not taken."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


@pytest.fixture
def stub() -> Iterator[Stubber]:
    rds = boto3.client(
        "rds",
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        endpoint_url="http://127.0.0.1:9",  # never reached: every call is stubbed
    )
    with Stubber(rds) as stubber:
        yield stubber
        stubber.assert_no_pending_responses()


def instance_status(stub: Stubber, status: str, identifier: str = "db1") -> None:
    stub.add_response(
        "describe_db_instances",
        {"DBInstances": [{"DBInstanceIdentifier": identifier, "DBInstanceStatus": status}]},
        {"DBInstanceIdentifier": identifier},
    )


def cluster_status(stub: Stubber, status: str, identifier: str = "c1") -> None:
    stub.add_response(
        "describe_db_clusters",
        {"DBClusters": [{"DBClusterIdentifier": identifier, "Status": status}]},
        {"DBClusterIdentifier": identifier},
    )


def operator(
    client: Any, kind: str = "instance", identifier: str = "db1", **limits: Any
) -> tuple[Operator, LineCapture, FakeTime]:
    fake = FakeTime()
    log = LineCapture()
    limits_ = Limits(**{**LIMITS.__dict__, **limits})
    op = Operator(
        client,
        Target(kind, identifier),
        log=log,
        limits=limits_,
        sleep=fake.sleep,
        clock=fake.clock,
    )
    return op, log, fake


def test_stop_waits_out_transitional_states_with_backoff_then_stops(stub: Stubber) -> None:
    instance_status(stub, "backing-up")
    instance_status(stub, "modifying")
    instance_status(stub, "available")
    stub.add_response("stop_db_instance", {}, {"DBInstanceIdentifier": "db1"})
    instance_status(stub, "stopping")
    instance_status(stub, "stopped")
    op, log, fake = operator(stub.client)

    outcome = op.stop()

    assert (outcome.status_before, outcome.status_after, outcome.changed) == (
        "backing-up",
        "stopped",
        True,
    )
    assert outcome.attempts == 3
    assert outcome.wait_seconds == 10.0  # one poll between stopping and stopped
    assert fake.sleeps == [1.0, 2.0, 10.0]  # backoff 1, 2; then one poll interval
    assert "backing-up: cannot stop now; retry 1/3 in 1 s" in log.lines
    assert "modifying: cannot stop now; retry 2/3 in 2 s" in log.lines


def test_database_stuck_in_a_transitional_state_fails_with_a_clear_final_message(
    stub: Stubber,
) -> None:
    for _ in range(4):
        instance_status(stub, "upgrading")
    op, _log, fake = operator(stub.client)

    with pytest.raises(StillTransitional) as failure:
        op.stop()

    assert str(failure.value) == (
        "gave up on stop of instance db1 after 4 checks: it stayed upgrading;"
        " stop it once AWS has finished"
    )
    assert fake.sleeps == [1.0, 2.0, 3.0]  # doubled, capped at retry_max_seconds


def test_stop_of_a_starting_database_waits_until_it_is_up_then_stops(stub: Stubber) -> None:
    instance_status(stub, "starting")
    instance_status(stub, "available")
    stub.add_response("stop_db_instance", {}, {"DBInstanceIdentifier": "db1"})
    instance_status(stub, "stopped")
    op, _log, _fake = operator(stub.client)

    outcome = op.stop()

    assert outcome.changed and outcome.status_after == "stopped"


def test_start_of_an_aurora_cluster_in_maintenance_retries_then_starts(stub: Stubber) -> None:
    cluster_status(stub, "maintenance")
    cluster_status(stub, "stopped")
    stub.add_response("start_db_cluster", {}, {"DBClusterIdentifier": "c1"})
    cluster_status(stub, "starting")
    cluster_status(stub, "available")
    op, log, _fake = operator(stub.client, kind="cluster", identifier="c1")

    outcome = op.start()

    assert (outcome.status_before, outcome.status_after, outcome.changed) == (
        "maintenance",
        "available",
        True,
    )
    assert log.lines[-1] == "cluster c1 is available after 10.0 s"


def test_state_moving_between_describe_and_stop_is_looked_at_again(stub: Stubber) -> None:
    instance_status(stub, "available")
    stub.add_client_error(
        "stop_db_instance",
        service_error_code="InvalidDBInstanceState",
        service_message="Instance db1 is not in available state.",
        http_status_code=400,
    )
    instance_status(stub, "stopping")  # someone else stopped it meanwhile
    instance_status(stub, "stopped")
    op, log, _fake = operator(stub.client)

    outcome = op.stop()

    assert (outcome.changed, outcome.status_after) == (False, "stopped")
    assert "AWS refused stop (InvalidDBInstanceState): now stopping" in log.lines


def test_throttled_calls_are_retried_with_backoff(stub: Stubber) -> None:
    stub.add_client_error("describe_db_instances", service_error_code="Throttling")
    instance_status(stub, "available")
    stub.add_client_error("stop_db_instance", service_error_code="ThrottlingException")
    stub.add_response("stop_db_instance", {}, {"DBInstanceIdentifier": "db1"})
    instance_status(stub, "stopped")
    op, log, fake = operator(stub.client)

    outcome = op.stop()

    assert outcome.changed and outcome.status_after == "stopped"
    assert fake.sleeps == [1.0, 1.0]
    assert sum("AWS throttled" in line for line in log.lines) == 2


def test_throttling_past_the_bound_fails_with_aws_error(stub: Stubber) -> None:
    for _ in range(3):
        stub.add_client_error("describe_db_instances", service_error_code="Throttling")
    op, _log, fake = operator(stub.client)

    with pytest.raises(ClientError, match="Throttling"):
        op.stop()
    assert fake.sleeps == [1.0, 2.0]


def test_waiting_for_the_target_state_gives_up_after_the_timeout(stub: Stubber) -> None:
    instance_status(stub, "available")
    stub.add_response("stop_db_instance", {}, {"DBInstanceIdentifier": "db1"})
    for _ in range(8):
        instance_status(stub, "stopping")
    op, _log, _fake = operator(stub.client, wait_timeout_seconds=65.0)

    with pytest.raises(WaitTimedOut, match="did not become stopped within 65 s"):
        op.stop()


@pytest.mark.django_db
def test_failed_action_is_recorded_with_its_message_and_log(stub: Stubber, settings: Any) -> None:
    settings.RDS_RETRY_ATTEMPTS = 2
    settings.RDS_RETRY_BASE_SECONDS = 0.01
    database = ManagedDatabase.objects.create(
        name="stuck", kind="instance", identifier="db1", region="us-east-1"
    )
    action = DatabaseAction.objects.create(database=database, action="stop", origin="test")
    for _ in range(2):
        instance_status(stub, "backing-up")

    with pytest.raises(StillTransitional):
        database_action_execute(action_id=action.pk, task_id="task-stuck", client=stub.client)

    action.refresh_from_db()
    assert action.state == ActionState.FAILED
    assert action.message.startswith("gave up on stop of instance db1 after 2 checks")
    assert action.finished_at is not None
    lines = job_log_since(task_id="task-stuck").lines
    assert lines[0] == "instance db1 is backing-up; wanted stopped"
    assert lines[-1].startswith("!! StillTransitional: gave up on stop")
