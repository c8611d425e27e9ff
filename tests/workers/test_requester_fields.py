"""Every record of a job keeps who asked the same way (workers.models.RequesterFields): the
same fields, and the same words on every page."""

from __future__ import annotations

from importlib import import_module

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Field, Model

from infra_tasks.rds.models import DatabaseAction
from infra_tasks.releases.models import Release
from infra_tasks.terraform.models import TerraformRun
from workers.models import Job, RequesterFields, RequesterKind, requester_text

RECORDS: list[type[Model]] = [Job, Release, TerraformRun, DatabaseAction]
FIELDS = ("requester_kind", "requester_label", "requested_by")


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
def test_each_job_record_has_the_requester_fields_of_the_mixin(model: type[Model]) -> None:
    assert issubclass(model, RequesterFields)
    for name in FIELDS:
        theirs = model._meta.get_field(name)
        ours = RequesterFields._meta.get_field(name)
        assert isinstance(theirs, Field) and isinstance(ours, Field)
        assert theirs.deconstruct()[1:] == ours.deconstruct()[1:], name


@pytest.mark.parametrize("model", RECORDS, ids=lambda m: m.__name__)
@pytest.mark.parametrize(
    ("kind", "label", "shown"),
    [
        (RequesterKind.USER, "alice", "User: alice"),
        (RequesterKind.CLI, "manage.py release", "Command line: manage.py release"),
        (RequesterKind.SCHEDULE, "Record SQS queue depths", "Schedule: Record SQS queue depths"),
        (RequesterKind.SYSTEM, "rds enforcement", "System: rds enforcement"),
    ],
)
def test_the_requester_reads_the_same_on_every_record(
    model: type[Model], kind: RequesterKind, label: str, shown: str
) -> None:
    record = model(requester_kind=kind, requester_label=label)
    assert record.requester == shown  # type: ignore[attr-defined]
    # The job list reads the same words from its annotated rows.
    assert requester_text(kind, label) == shown


def test_a_kind_this_code_does_not_know_is_shown_as_stored() -> None:
    assert requester_text("robot", "r2") == "robot: r2"


@pytest.mark.django_db
def test_a_job_asked_by_a_user_must_name_the_user() -> None:
    with pytest.raises(IntegrityError, match="job_user_requester_named"), transaction.atomic():
        Job.objects.create(
            task_id="t", task_name="x", queue="default", requester_kind="user", requester_label=""
        )
    Job.objects.create(
        task_id="t", task_name="x", queue="default", requester_kind="cli", requester_label=""
    )


def test_an_old_origin_splits_into_kind_and_label() -> None:
    split = import_module("infra_tasks.rds.migrations.0002_databaseaction_requester").split_origin
    assert split("user: alice", action="stop", database_name="db") == ("user", "alice")
    assert split("system: rds enforcement", action="stop", database_name="db") == (
        "system",
        "rds enforcement",
    )
    assert split("cli: a: b", action="stop", database_name="db") == ("cli", "a: b")
    assert split("schedule", action="stop", database_name="db") == (
        "schedule",
        "rds: nightly stop of db",
    )
    assert split("schedule", action="start", database_name="db") == (
        "schedule",
        "rds: morning start of db",
    )
    # Not in the old shape: kept whole, still readable.
    assert split("test", action="stop", database_name="db") == ("system", "test")
    assert split("robot: x", action="stop", database_name="db") == ("system", "robot: x")


@pytest.mark.django_db(transaction=True)
def test_the_migration_moves_old_actions_origin_into_the_requester_fields_and_back() -> None:
    before, after = [("rds", "0001_initial")], [("rds", "0002_databaseaction_requester")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        database = old.get_model("rds", "ManagedDatabase").objects.create(
            name="db", kind="instance", identifier="db", region="eu-central-1"
        )
        actions = old.get_model("rds", "DatabaseAction").objects
        for origin in ("user: staff2", "schedule", "test"):
            actions.create(database=database, action="stop", origin=origin)

        executor = MigrationExecutor(connection)
        executor.migrate(after)
        new = executor.loader.project_state(after).apps.get_model("rds", "DatabaseAction")
        assert set(new.objects.values_list("requester_kind", "requester_label")) == {
            ("user", "staff2"),
            ("schedule", "rds: nightly stop of db"),
            ("system", "test"),
        }
        # The previous release's code still inserts `origin` and not the new columns, and the
        # new code the other way round: both work until the column is dropped.
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO rds_databaseaction (database_id, action, origin, state, task_id,"
                " status_before, status_after, attempts, message, created_at)"
                " VALUES (%s, 'stop', 'cli: old', 'queued', '', '', '', 0, '', now())",
                [database.pk],
            )
        new.objects.create(
            database_id=database.pk, action="start", requester_kind="cli", requester_label="new"
        )

        executor = MigrationExecutor(connection)
        executor.migrate(before)
        old = executor.loader.project_state(before).apps
        origins = old.get_model("rds", "DatabaseAction").objects.values_list("origin", flat=True)
        assert {"user: staff2", "schedule", "system: test", "cli: new"} <= set(origins)
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
