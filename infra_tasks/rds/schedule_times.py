"""When a cron schedule in a named time zone fires, as UTC instants. No Django in here.

Resolves local wall times the way celery's crontab does when beat polls it: a time that
does not exist (skipped by a spring-forward change) fires at the same offset from the
change, i.e. 02:30 on a 02:00→03:00 day fires at 03:30; a time that exists twice (fall-back)
fires once, at its first occurrence. tests/infra_tasks/rds/test_schedule_times.py checks
these instants against django-celery-beat's own scheduler on the change days.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab_parser

# Far enough to reach any date a cron expression can name (29 February included).
HORIZON_DAYS = 366 * 8


@dataclass(frozen=True)
class CronSpec:
    minute: str
    hour: str
    day_of_week: str
    day_of_month: str
    month_of_year: str
    time_zone: str

    @classmethod
    def daily_at(cls, at: time, *, days: str = "*", time_zone: str) -> CronSpec:
        return cls(str(at.minute), str(at.hour), days, "*", "*", time_zone)

    def __post_init__(self) -> None:
        # Fail on construction, not on first use, for an unparsable field or zone.
        ZoneInfo(self.time_zone)
        self._sets()

    def _sets(self) -> tuple[list[int], list[int], set[int], set[int], set[int]]:
        return (
            sorted(crontab_parser(60).parse(self.minute)),
            sorted(crontab_parser(24).parse(self.hour)),
            _parse_day_of_week(self.day_of_week),
            crontab_parser(31, 1).parse(self.day_of_month),
            crontab_parser(12, 1).parse(self.month_of_year),
        )


def next_occurrence(spec: CronSpec, after: datetime) -> datetime | None:
    """The first firing strictly after `after` (aware), in UTC; None if it never fires."""
    return next(_occurrences(spec, after, forward=True), None)


def previous_occurrence(spec: CronSpec, at_or_before: datetime) -> datetime | None:
    """The last firing at or before `at_or_before` (aware), in UTC."""
    return next(_occurrences(spec, at_or_before, forward=False), None)


def _occurrences(spec: CronSpec, pivot: datetime, *, forward: bool) -> Iterator[datetime]:
    if pivot.tzinfo is None:
        raise ValueError("pivot must be timezone-aware")
    zone = ZoneInfo(spec.time_zone)
    minutes, hours, weekdays, month_days, months = spec._sets()
    pivot = pivot.astimezone(UTC)
    # Start a day early: a gap-shifted time can land on the next local date's instants.
    day = pivot.astimezone(zone).date() + timedelta(days=-1 if forward else 1)
    step = timedelta(days=1 if forward else -1)
    for _ in range(HORIZON_DAYS):
        if _day_matches(day, weekdays, month_days, months):
            instants = sorted(
                {_resolve(day, h, m, zone) for h in hours for m in minutes},
                reverse=not forward,
            )
            for instant in instants:
                if (instant > pivot) if forward else (instant <= pivot):
                    yield instant
        day += step


def _resolve(day: date, hour: int, minute: int, zone: ZoneInfo) -> datetime:
    # fold=0: the first of two ambiguous instants, and the pre-change offset for a skipped
    # time, which moves it forward by the size of the gap.
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=zone, fold=0).astimezone(UTC)


def _day_matches(day: date, weekdays: set[int], month_days: set[int], months: set[int]) -> bool:
    cron_weekday = (day.weekday() + 1) % 7  # cron: 0 is Sunday
    return cron_weekday in weekdays and day.day in month_days and day.month in months


def _parse_day_of_week(value: str) -> set[int]:
    # celery accepts 7 for Sunday as cron does; fold it onto 0.
    return (
        {d % 7 for d in crontab_parser(8).parse(value)} if value.strip() != "*" else set(range(7))
    )
