"""Cron fields said in words: what a crontab field takes, when a value is refused.

django-celery-beat validates each field of a crontab with python-crontab and shows its
exception as the error (`"No enumeration for Hours: 'abc'"`, `Sequence can not be divided
by zero or max`): the library's text, quotes and all. It also takes values Celery cannot
build a schedule from (a day of the week 7, which its own help offers for Sunday): beat then
skips the entry without a word, and the schedule never fires. Forms with cron fields
(beat's crontab, a managed database's days) ask here instead: both must take the value.
"""

from __future__ import annotations

from celery.schedules import crontab
from django.core.exceptions import ValidationError
from django_celery_beat.models import CrontabSchedule

# CrontabSchedule's field -> what it takes, with examples.
ACCEPTED = {
    "minute": 'minutes 0-59, e.g. "0", "0,30", "*/15" or "*"',
    "hour": 'hours 0-23, e.g. "8", "8,20", "9-17" or "*"',
    "day_of_month": 'days of the month 1-31, e.g. "1", "1,15" or "*"',
    "month_of_year": 'months 1-12, e.g. "1", "1,7" or "*"',
    "day_of_week": 'days of the week 0-6 (Sunday is 0) or sun-sat, e.g. "1-5", "mon-fri" or "*"',
}
DAY_OF_WEEK_HELP = 'Use "*" for all; Sunday is 0, Monday 1 (not 7). Examples: "1-5", "mon-fri".'


def cron_field_check(field: str, value: str) -> None:
    """Raise a ValidationError that says what `field` takes when beat's validator or Celery
    would refuse `value`."""
    try:
        for validator in CrontabSchedule._meta.get_field(field).validators:
            validator(value)
        crontab(**{field: value})
    except (ValidationError, ValueError):
        raise ValidationError(f'"{value}" is not valid here: use {ACCEPTED[field]}.') from None
