"""Schedules across daylight-saving change days, driven through django-celery-beat's own code.

Beat is simulated on a clock moved by the test: each tick asks `ModelEntry.is_due` of the
real PeriodicTask row our service created (its TzAwareCrontab reads the simulated clock) and,
when due, records the run as beat does. On each change day a 22:00 local stop must fire
exactly once, at 22:00 local, never twice and never skipped; the same for a 07:00 start.
Our own next-change computation (dashboard, duplicate detection) must predict exactly the
instants the scheduler fires at.

Ticks are a minute apart, on whole minutes, where real beat wakes at most every 5 s: an
entry that is due stays due until it runs, so a coarser tick can only delay a firing to the
next tick, never hide one or merge two; and every expected instant is on a whole minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import ModelEntry

from infra_tasks.rds.models import ManagedDatabase
from infra_tasks.rds.schedule_times import CronSpec, next_occurrence, previous_occurrence
from infra_tasks.rds.services.schedules import DatabaseSchedule, managed_database_save
from workers.celery import app

BEAT_TICK = timedelta(minutes=1)
# Celery's own time zone (CELERY_TIMEZONE, from DJANGO_TIME_ZONE) matters to beat's
# arithmetic: the same, behind and ahead of the schedules' zones.
APP_ZONES = ["UTC", "America/Los_Angeles", "Asia/Tokyo"]

# (zone, change day): spring forward, then fall back.
CHANGE_DAYS = [
    ("Europe/Warsaw", date(2026, 3, 29)),
    ("Europe/Warsaw", date(2026, 10, 25)),
    ("America/New_York", date(2026, 3, 8)),
    ("America/New_York", date(2026, 11, 1)),
]


def local(zone: str, day: date, at: time) -> datetime:
    return datetime.combine(day, at, tzinfo=ZoneInfo(zone)).astimezone(UTC)


def beat_fires(task: PeriodicTask, start: datetime, end: datetime) -> list[datetime]:
    """Instants at which beat, ticking from `start` to `end`, runs `task`."""
    task.last_run_at = start
    entry = ModelEntry(task)
    zone = entry.schedule.tz
    clock = {"now": start}
    fires = []
    while clock["now"] < end:
        entry.schedule.nowfun = lambda: clock["now"].astimezone(zone)
        is_due, _next = entry.is_due()
        if is_due:
            fires.append(clock["now"])
            # What ModelEntry.__next__ records, on the simulated clock.
            entry.last_run_at = clock["now"]
        clock["now"] += BEAT_TICK
    return fires


def registered(zone: str, *, stop_at: time, start_at: time) -> ManagedDatabase:
    return managed_database_save(
        database=ManagedDatabase(
            name=f"dst-{zone}", kind="instance", identifier="dst", region="us-east-1"
        ),
        schedule=DatabaseSchedule(
            time_zone=zone, stop_at=stop_at, stop_days="*", start_at=start_at, start_days="*"
        ),
    )


@pytest.fixture(params=APP_ZONES)
def celery_zone(request: pytest.FixtureRequest) -> Iterator[str]:
    saved = app.conf.timezone
    app.conf.timezone = request.param
    app.__dict__.pop("timezone", None)  # a cached property on the app
    yield request.param
    app.conf.timezone = saved
    app.__dict__.pop("timezone", None)


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "change_day"), CHANGE_DAYS, ids=lambda v: str(v))
def test_nightly_stop_and_morning_start_fire_once_each_local_day_across_dst_change(
    zone: str, change_day: date, celery_zone: str
) -> None:
    assert str(app.timezone) == celery_zone
    database = registered(zone, stop_at=time(22, 0), start_at=time(7, 0))
    day_before, day_after = change_day - timedelta(days=1), change_day + timedelta(days=1)
    start, end = local(zone, day_before, time(12)), local(zone, day_after, time(12))

    assert database.stop_task is not None and database.start_task is not None
    stops = beat_fires(database.stop_task, start, end)
    starts = beat_fires(database.start_task, start, end)

    assert stops == [local(zone, day_before, time(22)), local(zone, change_day, time(22))]
    assert starts == [local(zone, change_day, time(7)), local(zone, day_after, time(7))]
    for fired in stops:
        assert fired.astimezone(ZoneInfo(zone)).time() == time(22, 0)

    # Our prediction of the next change is the instant beat really fires at.
    for fires, action in ((stops, "stop"), (starts, "start")):
        spec = DatabaseSchedule(time_zone=zone, stop_days="*", start_days="*").spec(action)
        assert spec is not None
        predicted, cursor = [], start
        while (nxt := next_occurrence(spec, cursor)) is not None and nxt < end:
            predicted.append(nxt)
            cursor = nxt
        assert predicted == fires


@pytest.mark.django_db
@pytest.mark.parametrize(("zone", "change_day"), CHANGE_DAYS, ids=lambda v: str(v))
def test_a_time_inside_the_changed_hour_fires_once_where_beat_fires_it(
    zone: str, change_day: date
) -> None:
    # 02:30 does not exist on spring-forward days and exists twice on fall-back days.
    database = registered(zone, stop_at=time(2, 30), start_at=time(7, 0))
    start = local(zone, change_day - timedelta(days=1), time(12))
    end = local(zone, change_day, time(12))
    assert database.stop_task is not None

    fires = beat_fires(database.stop_task, start, end)

    spec = CronSpec.daily_at(time(2, 30), time_zone=zone)
    assert len(fires) == 1
    assert fires == [next_occurrence(spec, start)]


def test_previous_occurrence_is_the_last_firing_at_or_before_the_instant() -> None:
    spec = CronSpec.daily_at(time(22, 0), days="1-5", time_zone="Europe/Warsaw")
    friday_stop = local("Europe/Warsaw", date(2026, 11, 27), time(22))
    assert previous_occurrence(spec, friday_stop) == friday_stop
    assert previous_occurrence(spec, friday_stop - timedelta(seconds=1)) == local(
        "Europe/Warsaw", date(2026, 11, 26), time(22)
    )
    # Weekend: still Friday's.
    assert previous_occurrence(spec, local("Europe/Warsaw", date(2026, 11, 29), time(23))) == (
        friday_stop
    )
    assert next_occurrence(spec, friday_stop) == local(
        "Europe/Warsaw", date(2026, 11, 30), time(22)
    )


def test_spring_forward_gap_and_fall_back_repeat_are_resolved_once() -> None:
    spec = CronSpec.daily_at(time(2, 30), time_zone="America/New_York")
    # 2026-03-08 02:30 does not exist in New York: it fires at 03:30 EDT (07:30 UTC).
    assert next_occurrence(spec, local("America/New_York", date(2026, 3, 8), time(0))) == (
        datetime(2026, 3, 8, 7, 30, tzinfo=UTC)
    )
    # 2026-11-01 01:30 exists twice: once, at the first (EDT, 05:30 UTC).
    spec = CronSpec.daily_at(time(1, 30), time_zone="America/New_York")
    first = next_occurrence(spec, local("America/New_York", date(2026, 11, 1), time(0)))
    assert first == datetime(2026, 11, 1, 5, 30, tzinfo=UTC)
    assert next_occurrence(spec, first) == datetime(2026, 11, 2, 6, 30, tzinfo=UTC)


def test_bad_cron_field_or_zone_is_rejected_when_built() -> None:
    with pytest.raises(ValueError):
        CronSpec.daily_at(time(22, 0), days="mon-funday", time_zone="UTC")
    with pytest.raises(Exception):  # noqa: B017 - zoneinfo raises its own KeyError subclass
        CronSpec.daily_at(time(22, 0), time_zone="Mars/Olympus")
