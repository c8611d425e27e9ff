"""The forms of the managed-database admin: a database with its schedule (stored in beat),
and the time to keep databases running until, read in their schedule's zone."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

from django import forms
from django.conf import settings
from django.utils import timezone

from infra_tasks.rds.models import ActionKind, ManagedDatabase
from infra_tasks.rds.schedule_times import CronSpec
from infra_tasks.rds.selectors import database_cron_spec
from infra_tasks.rds.services.schedules import DatabaseSchedule
from workers.cron_fields import cron_field_check

TIME_ZONES = sorted(available_timezones())


class ManagedDatabaseForm(forms.ModelForm):
    """The model's fields plus its schedule, which is stored in django-celery-beat."""

    time_zone = forms.ChoiceField(choices=[(z, z) for z in TIME_ZONES], initial="UTC")
    stop_at = forms.TimeField(
        required=False, initial=time(22, 0), help_text="Nightly stop, local time; empty: none."
    )
    stop_days = forms.CharField(initial="*", help_text='Cron days of week: "*", "1-5", "mon-fri".')
    start_at = forms.TimeField(
        required=False, initial=time(7, 0), help_text="Morning start, local time; empty: none."
    )
    start_days = forms.CharField(initial="1-5", help_text="Cron days of week.")

    class Meta:
        model = ManagedDatabase
        fields = ["name", "kind", "identifier", "region", "enforce"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            # Show the schedule as beat has it: it may have been edited in the beat admin.
            for action, at, days in (
                (ActionKind.STOP, "stop_at", "stop_days"),
                (ActionKind.START, "start_at", "start_days"),
            ):
                spec = database_cron_spec(database=self.instance, action=action)
                self.initial[at] = _time_of(spec)
                if spec is not None:
                    self.initial[days] = spec.day_of_week
                    self.initial["time_zone"] = spec.time_zone

    def clean_stop_days(self) -> str:
        days: str = self.cleaned_data["stop_days"]
        cron_field_check("day_of_week", days)
        return days

    def clean_start_days(self) -> str:
        days: str = self.cleaned_data["start_days"]
        cron_field_check("day_of_week", days)
        return days

    def clean(self) -> dict[str, Any] | None:
        data = super().clean()
        try:
            self.schedule().spec(ActionKind.STOP)
            self.schedule().spec(ActionKind.START)
        except (ValueError, KeyError) as exc:
            raise forms.ValidationError(f"Not a valid schedule: {exc}") from exc
        return data

    def schedule(self) -> DatabaseSchedule:
        data = self.cleaned_data
        return DatabaseSchedule(
            time_zone=data.get("time_zone") or "UTC",
            stop_at=data.get("stop_at"),
            stop_days=data.get("stop_days") or "*",
            start_at=data.get("start_at"),
            start_days=data.get("start_days") or "*",
        )


def _time_of(spec: CronSpec | None) -> time | None:
    if spec is None or not (spec.hour.isdigit() and spec.minute.isdigit()):
        return None
    return time(int(spec.hour), int(spec.minute))


class KeepRunningForm(forms.Form):
    """The time to keep running until: local to the zone of the databases' schedule (the page
    names it above the form)."""

    until = forms.DateTimeField(widget=forms.DateTimeInput(attrs={"type": "datetime-local"}))

    def __init__(self, *args: Any, zone: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone

    def full_clean(self) -> None:
        # The typed time is read in the schedule's zone, not the site's.
        with timezone.override(ZoneInfo(self.zone)):
            super().full_clean()

    def clean_until(self) -> datetime:
        until: datetime = self.cleaned_data["until"]
        if until <= timezone.now():
            raise forms.ValidationError(
                f"{timezone.localtime(until):%Y-%m-%d %H:%M} {self.zone} has passed: "
                "give a time to come."
            )
        return until


def schedule_zones(databases: Iterable[ManagedDatabase]) -> set[str]:
    """The time zones the databases' schedules are in (the site's for one without)."""
    zones = set()
    for database in databases:
        spec = database_cron_spec(database=database, action=ActionKind.STOP) or database_cron_spec(
            database=database, action=ActionKind.START
        )
        zones.add(spec.time_zone if spec else settings.TIME_ZONE)
    return zones
