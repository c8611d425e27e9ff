"""insert_rows writes what save() writes, in one round trip, all or nothing."""

from __future__ import annotations

import pytest
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import IntegrityError, connection, transaction
from django.db.models.functions import Now
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django_celery_results.models import TaskResult

from workers.models import Job, RequesterKind
from workers.row_inserts import insert_rows

pytestmark = pytest.mark.django_db


def rows(task_id: str, user_id: int) -> tuple[Job, TaskResult, LogEntry]:
    job = Job(
        task_id=task_id,
        task_name="workers.tasks.diagnostic_run_execute",
        queue="default",
        requester_kind=RequesterKind.USER,
        requester_label="ada",
        requested_by_id=user_id,
    )
    result = TaskResult(
        task_id=task_id,
        task_name="workers.tasks.diagnostic_run_execute",
        task_args="[1]",
        task_kwargs="{}",
        status="PENDING",
        content_type="application/json",
        content_encoding="utf-8",
    )
    entry = LogEntry(
        user_id=user_id,
        content_type=ContentType.objects.get_for_model(Job),
        object_id="1",
        object_repr=f"job {task_id}",
        action_flag=ADDITION,
        change_message=f"Queued job [{task_id}]",
    )
    return job, result, entry


def saved_one_by_one(task_id: str, user_id: int) -> tuple[Job, TaskResult, LogEntry]:
    """`rows` saved as Model.save() saves them: what insert_rows must store alike."""
    saved = rows(task_id, user_id)
    for row in saved:
        row.save(force_insert=True)
    return saved


def stored(row: object) -> dict[str, object]:
    """A row as read back, without what differs between two inserts by nature."""
    fresh = type(row).objects.get(pk=row.pk)  # type: ignore[attr-defined]
    values = model_to_dict(fresh)
    for name in ("id", "task_id", "object_repr", "change_message"):
        values.pop(name, None)
    return values


def test_rows_inserted_together_are_stored_as_save_stores_them() -> None:
    user = get_user_model().objects.create_user("ada", is_staff=True)
    saved = saved_one_by_one("saved-one-by-one", user.pk)
    together = rows("inserted-together", user.pk)

    insert_rows(*together)

    for one, other in zip(saved, together, strict=True):
        assert other.pk is not None and not other._state.adding
        assert stored(other) == stored(one)
    # Fields filled on insert (auto_now_add, auto_now, defaults) are filled on the instance.
    assert together[0].created_at is not None
    assert together[1].date_created is not None and together[1].date_done is not None
    assert Job.objects.get(task_id="inserted-together").created_at == together[0].created_at


def test_later_rows_of_a_model_reuse_its_statement_and_are_stored_as_save_stores_them() -> None:
    user = get_user_model().objects.create_user("ada", is_staff=True)
    saved = saved_one_by_one("saved", user.pk)
    first = rows("first", user.pk)
    insert_rows(*first)  # compiles each model's statement, or finds it kept
    later = rows("later", user.pk)

    insert_rows(*later)

    for one, other in zip(saved, later, strict=True):
        assert other.pk is not None and other.pk != first[later.index(other)].pk
        assert stored(other) == stored(one)
    # Each row's own values went in, auto_now ones filled afresh, not the first row's.
    assert Job.objects.get(pk=later[0].pk).task_id == "later"
    assert later[0].created_at >= first[0].created_at
    assert TaskResult.objects.get(pk=later[1].pk).date_done == later[1].date_done


def test_a_value_that_is_an_expression_is_compiled_into_its_statement() -> None:
    user = get_user_model().objects.create_user("ada", is_staff=True)
    insert_rows(*rows("plain", user.pk))
    job, result, entry = rows("expression", user.pk)
    job.run_after = Now()

    insert_rows(job, result, entry)

    stored_job = Job.objects.get(task_id="expression")
    assert stored_job.run_after is not None
    assert stored_job.run_after >= Job.objects.get(task_id="plain").created_at
    # The next plain row of the model is stored plainly again.
    again = rows("plain-again", user.pk)
    insert_rows(*again)
    assert Job.objects.get(task_id="plain-again").run_after is None


def test_rows_go_to_postgresql_in_one_round_trip() -> None:
    user = get_user_model().objects.create_user("ada", is_staff=True)
    ContentType.objects.get_for_model(Job)  # cached from here on, as in a running process
    batch = rows("one-trip", user.pk)

    with CaptureQueriesContext(connection) as queries:
        insert_rows(*batch)

    assert len(queries.captured_queries) == 1
    assert [type(row).objects.filter(pk=row.pk).count() for row in batch] == [1, 1, 1]
    # Each row got its own primary key back, not its neighbour's.
    assert TaskResult.objects.get(pk=batch[1].pk).task_id == "one-trip"
    assert LogEntry.objects.get(pk=batch[2].pk).change_message == "Queued job [one-trip]"


def test_a_row_the_database_refuses_leaves_none_of_the_batch() -> None:
    user = get_user_model().objects.create_user("ada", is_staff=True)
    TaskResult.objects.create(task_id="taken", status="SUCCESS")
    job, result, entry = rows("taken", user.pk)

    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(job, result, entry)

    assert not Job.objects.filter(task_id="taken").exists()
    assert not LogEntry.objects.exists()
    assert TaskResult.objects.filter(task_id="taken").count() == 1


def test_no_rows_is_no_query() -> None:
    with CaptureQueriesContext(connection) as queries:
        insert_rows()
    assert queries.captured_queries == []
