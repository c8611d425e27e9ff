"""A managed database's schedule is two django-celery-beat rows kept in step by the service;
keeping it running past its stop is refused for a time already past."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask

from infra_tasks.rds.jobs import DATABASE_SCHEDULED_RUN
from infra_tasks.rds.models import DatabaseAction, ManagedDatabase
from infra_tasks.rds.selectors import database_next_change
from infra_tasks.rds.services.schedules import (
    DatabaseSchedule,
    database_keep_running,
    managed_database_delete,
    managed_database_save,
)
from workers.enqueue import Requester
from workers.errors import ApplicationError

pytestmark = pytest.mark.django_db


def make(schedule: DatabaseSchedule, name: str = "orders") -> ManagedDatabase:
    return managed_database_save(
        database=ManagedDatabase(
            name=name, kind="instance", identifier=name, region="eu-central-1"
        ),
        schedule=schedule,
    )


def test_registering_creates_the_nightly_stop_and_morning_start_in_beat() -> None:
    database = make(DatabaseSchedule(time_zone="Europe/Warsaw"))

    stop = PeriodicTask.objects.get(pk=database.stop_task_id)
    start = PeriodicTask.objects.get(pk=database.start_task_id)
    assert stop.name == "rds: nightly stop of orders" and stop.enabled
    assert stop.task == DATABASE_SCHEDULED_RUN.name
    assert json.loads(stop.args) == [database.pk, "stop"]
    assert json.loads(start.args) == [database.pk, "start"]
    assert stop.crontab is not None and start.crontab is not None
    assert (stop.crontab.hour, stop.crontab.minute, stop.crontab.day_of_week) == ("22", "0", "*")
    assert (start.crontab.hour, start.crontab.minute, start.crontab.day_of_week) == (
        "7",
        "0",
        "1-5",
    )
    assert str(stop.crontab.timezone) == "Europe/Warsaw"


def test_changing_the_schedule_updates_the_same_beat_rows_and_removes_a_dropped_start() -> None:
    database = make(DatabaseSchedule(time_zone="Europe/Warsaw"))
    stop_pk, start_pk = database.stop_task_id, database.start_task_id

    database = managed_database_save(
        database=database,
        schedule=DatabaseSchedule(
            time_zone="America/New_York", stop_at=time(23, 30), start_at=None
        ),
    )

    assert database.stop_task_id == stop_pk
    assert database.start_task is None
    assert not PeriodicTask.objects.filter(pk=start_pk).exists()
    crontab = PeriodicTask.objects.get(pk=stop_pk).crontab
    assert crontab is not None
    assert (crontab.hour, crontab.minute, str(crontab.timezone)) == ("23", "30", "America/New_York")


def test_next_change_follows_an_edit_made_in_the_beat_admin() -> None:
    database = make(DatabaseSchedule(time_zone="UTC", start_at=None))
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    change = database_next_change(database=database, now=now)
    assert change is not None and (change.action, change.at) == (
        "stop",
        datetime(2026, 6, 1, 22, 0, tzinfo=UTC),
    )

    # Someone moves the stop to 20:15 in the beat admin.
    crontab, _ = CrontabSchedule.objects.get_or_create(minute="15", hour="20", timezone="UTC")
    PeriodicTask.objects.filter(pk=database.stop_task_id).update(crontab=crontab)
    database.refresh_from_db()

    change = database_next_change(database=database, now=now)
    assert change is not None and change.at == datetime(2026, 6, 1, 20, 15, tzinfo=UTC)

    PeriodicTask.objects.filter(pk=database.stop_task_id).update(enabled=False)
    database.refresh_from_db()
    assert database_next_change(database=database, now=now) is None


def test_next_change_says_when_keep_running_skips_the_stop() -> None:
    database = make(DatabaseSchedule(time_zone="UTC", start_at=None))
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    database.keep_running_until = now + timedelta(days=1)

    change = database_next_change(database=database, now=now)

    assert change is not None and change.skipped_by_override


def test_next_change_passes_over_a_firing_that_would_change_nothing() -> None:
    """A database stopped by hand read "next change: stop at 22:00", which does nothing to
    it: its next change is the morning start."""
    database = make(DatabaseSchedule(time_zone="UTC"))  # stop 22:00 daily, start 07:00 weekdays
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)  # a Monday

    held_stopped = database_next_change(database=database, now=now, desired="stopped")
    held_running = database_next_change(database=database, now=now, desired="running")

    assert held_stopped is not None and (held_stopped.action, held_stopped.at) == (
        "start",
        datetime(2026, 6, 2, 7, 0, tzinfo=UTC),
    )
    assert held_running is not None and (held_running.action, held_running.at) == (
        "stop",
        datetime(2026, 6, 1, 22, 0, tzinfo=UTC),
    )
    only_stop = make(DatabaseSchedule(time_zone="UTC", start_at=None), name="reports")
    assert database_next_change(database=only_stop, now=now, desired="stopped") is None


def test_deleting_a_database_removes_its_schedule() -> None:
    database = make(DatabaseSchedule(time_zone="UTC"))
    pks = [database.stop_task_id, database.start_task_id]

    managed_database_delete(database=database)

    assert not PeriodicTask.objects.filter(pk__in=pks).exists()


def test_a_row_written_under_the_former_task_name_takes_the_new_one_on_the_next_save() -> None:
    database = make(DatabaseSchedule(time_zone="UTC"))
    PeriodicTask.objects.filter(pk=database.stop_task_id).update(
        task="infra_tasks.rds.tasks.run_scheduled_action"
    )
    database.refresh_from_db()

    managed_database_save(database=database, schedule=DatabaseSchedule(time_zone="UTC"))

    assert PeriodicTask.objects.get(pk=database.stop_task_id).task == DATABASE_SCHEDULED_RUN.name


def test_keeping_running_until_a_time_past_is_refused_in_words_and_changes_nothing() -> None:
    database = make(DatabaseSchedule(time_zone="UTC"))

    with pytest.raises(ApplicationError, match="keep running until must be in the future"):
        database_keep_running(
            database=database,
            until=timezone.now() - timedelta(minutes=1),
            requester=Requester.cli("t"),
        )

    database.refresh_from_db()
    assert database.keep_running_until is None and not DatabaseAction.objects.exists()
