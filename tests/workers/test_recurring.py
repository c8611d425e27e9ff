"""Recurring jobs as the Jobs home lists them: when, in which zone, the next run; Run now."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)

from tests.infra_tasks.rds.support import register
from tests.support.servers import AwsEndpoint
from workers.models import Job
from workers.recurring import recurring_tasks

pytestmark = pytest.mark.django_db


def test_each_schedule_reads_as_a_person_would_with_its_zone_and_next_run() -> None:
    PeriodicTask.objects.all().delete()
    nightly = CrontabSchedule.objects.create(
        minute="0", hour="2", day_of_week="*", timezone="Europe/Paris"
    )
    PeriodicTask.objects.create(name="nightly", task="x.nightly", crontab=nightly)
    every = IntervalSchedule.objects.create(every=5, period="minutes")
    last = timezone.now() - timedelta(minutes=2)
    PeriodicTask.objects.create(name="often", task="x.often", interval=every, last_run_at=last)
    PeriodicTask.objects.create(name="off", task="x.off", interval=every, enabled=False)

    rows = {r.name: r for r in recurring_tasks()}
    assert "02:00" in rows["nightly"].when and rows["nightly"].time_zone == "Europe/Paris"
    assert rows["often"].when == "every 5 minutes"
    next_run = rows["often"].next_run_at
    assert next_run is not None
    assert abs((next_run - (last + timedelta(minutes=5))).total_seconds()) < 2
    assert rows["off"].next_run_at is None


def test_run_now_needs_its_permission() -> None:
    every = IntervalSchedule.objects.create(every=5, period="minutes")
    schedule = PeriodicTask.objects.create(name="often", task="x.often", interval=every)
    user = get_user_model().objects.create_user("viewer", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["view_periodictask", "view_taskresult"])
    )
    client = Client()
    client.force_login(user)
    assert client.post(f"/ops/recurring/{schedule.pk}/run/").status_code == 403
    assert "Run now" not in client.get("/admin/").content.decode()


def test_run_now_also_needs_the_operate_permission_of_the_jobs_family(
    sqs_queues: AwsEndpoint,
) -> None:
    register("demo-postgres")
    schedule = PeriodicTask.objects.get(name="rds: nightly stop of demo-postgres")
    user = get_user_model().objects.create_user("runner", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_periodictask", "view_taskresult", "run_recurring_now"]
        )
    )
    client = Client()
    client.force_login(user)

    refused = client.post(f"/ops/recurring/{schedule.pk}/run/", follow=True)
    assert "You may not start the jobs of rds: nightly stop of demo-postgres" in (
        refused.content.decode()
    )
    assert not Job.objects.exists()

    user.user_permissions.add(Permission.objects.get(codename="operate_manageddatabase"))
    user = get_user_model().objects.get(pk=user.pk)  # permissions are cached per object
    client.force_login(user)
    client.post(f"/ops/recurring/{schedule.pk}/run/")
    assert Job.objects.get().task_name == schedule.task


def test_run_now_is_offered_only_on_schedules_whose_family_the_user_may_start(
    sqs_queues: AwsEndpoint,
) -> None:
    register("demo-postgres")
    every = IntervalSchedule.objects.create(every=5, period="minutes")
    diagnostic = PeriodicTask.objects.create(
        name="diagnostics", task="workers.tasks.diagnostic_run_execute", interval=every
    )
    nightly = PeriodicTask.objects.get(name="rds: nightly stop of demo-postgres")
    user = get_user_model().objects.create_user("runner", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "view_periodictask",
                "view_taskresult",
                "run_recurring_now",
                "run_diagnostic",
            ]
        )
    )
    client = Client()
    client.force_login(user)

    home = client.get("/admin/").content.decode()
    assert f'id="run-now-{diagnostic.pk}"' in home
    assert f'id="run-now-{nightly.pk}"' not in home  # refused if pressed: not shown

    user.user_permissions.add(Permission.objects.get(codename="operate_manageddatabase"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    assert f'id="run-now-{nightly.pk}"' in client.get("/admin/").content.decode()


def test_run_now_by_whom_may_not_open_the_jobs_page_ends_on_the_jobs_home_not_a_403(
    sqs_queues: AwsEndpoint,
) -> None:
    """Starting a family's jobs and looking at them are two permissions: a database
    operator without the databases' job view is told what was queued on the Jobs home,
    with no link that would refuse them, instead of being sent to a 403."""
    register("demo-postgres")
    schedule = PeriodicTask.objects.get(name="rds: nightly stop of demo-postgres")
    user = get_user_model().objects.create_user("operator", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=[
                "view_periodictask",
                "view_taskresult",
                "run_recurring_now",
                "operate_manageddatabase",
            ]
        )
    )
    client = Client()
    client.force_login(user)
    assert f'id="run-now-{schedule.pk}"' in client.get("/admin/").content.decode()

    response = client.post(f"/ops/recurring/{schedule.pk}/run/", follow=True)

    job = Job.objects.get()
    assert response.status_code == 200
    assert response.redirect_chain == [("/admin/", 302)]
    assert f"Queued now: job {job.task_id}." in response.content.decode()
    assert f"/ops/jobs/{job.task_id}/" not in response.content.decode()

    user.user_permissions.add(Permission.objects.get(codename="view_databaseaction"))
    client.force_login(get_user_model().objects.get(pk=user.pk))
    again = client.post(f"/ops/recurring/{schedule.pk}/run/")
    newest = Job.objects.latest("created_at")
    assert again["Location"] == f"/ops/jobs/{newest.task_id}/"


def a_solar_noon_on_the_prime_meridian(when: datetime | None) -> datetime:
    """`when` is the next solar noon at latitude 0, longitude 0: within the next day, at
    12:00 UTC give or take the equation of time (at most 17 minutes)."""
    assert when is not None
    now = timezone.now()
    assert now < when <= now + timedelta(hours=24, minutes=20), when
    utc = when.astimezone(UTC)
    assert time(11, 43) <= utc.time() <= time(12, 17), utc
    return when


def test_a_solar_schedule_shows_its_next_event_on_the_jobs_home() -> None:
    """Celery computes solar times with ephem, which was not installed: asking raised
    ImproperlyConfigured and the Jobs home answered 500 to everyone who may see schedules."""
    noon = SolarSchedule.objects.create(event="solar_noon", latitude=0, longitude=0)
    PeriodicTask.objects.create(
        name="at solar noon", task="x.noon", solar=noon, last_run_at=timezone.now()
    )

    rows = {r.name: r for r in recurring_tasks()}
    assert rows["at solar noon"].when.startswith("Solar noon")
    next_run = a_solar_noon_on_the_prime_meridian(rows["at solar noon"].next_run_at)

    client = Client(raise_request_exception=False)
    client.force_login(get_user_model().objects.create_superuser("root"))
    home = client.get("/admin/")
    assert home.status_code == 200
    row = re.search(
        r'<tr data-schedule="at solar noon">.*?<td class="next-run">([^<]*)</td>',
        home.content.decode(),
        re.S,
    )
    assert row is not None
    shown = datetime.strptime(row.group(1).rsplit(" ", 1)[0], "%Y-%m-%d %H:%M:%S")
    expected = timezone.localtime(next_run).replace(tzinfo=None)
    assert abs((shown - expected).total_seconds()) < 2, (row.group(1), next_run)
