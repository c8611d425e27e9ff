"""Managed databases in a real headless Chromium, clicking what is on screen: Stop now and
Start now from the list through to the job's log, and Keep running until… with its form."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from infra_tasks.rds.models import DatabaseAction, ManagedDatabase
from tests.infra_tasks.rds.support import SCHEDULE, aws_status, new_instance, register
from tests.support.browser import Tour
from tests.support.servers import AwsEndpoint

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def run_action(tour: Tour, database: ManagedDatabase, label: str, status: int = 302) -> None:
    """From anywhere: home, Managed databases, tick the database, choose the action, Go."""
    page = tour.page
    page.locator("#site-name a").click()
    page.locator("#content-main").get_by_role("link", name="Managed databases").click()
    page.check(f'#result_list input[name="_selected_action"][value="{database.pk}"]')
    page.select_option("select[name=action]", label=label)
    with tour.submitted(status):
        page.locator("#changelist-form button[name=index]").click()


def test_stop_start_and_keep_running_from_the_list_through_to_the_job_log(
    tour: Tour, aws: AwsEndpoint
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    database = register(new_instance(aws))

    # Stop now: the message links the action and its job; the job page shows it end.
    run_action(tour, database, "Stop now")
    message = page.locator("ul.messagelist")
    expect(message).to_contain_text(f"Stop queued for {database.name} (job and log)")
    stop = DatabaseAction.objects.get(action="stop")
    tour.click_in_message("job and log")
    expect(page).to_have_url(re.compile(r"/admin/django_celery_results/taskresult/\d+/change/$"))
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(page.locator("#job-subject")).to_have_text(f"Stop {database.name} (action #{stop.pk})")
    expect(page.locator("#job-subject-state")).to_have_text("Succeeded")
    expect(page.locator("#job-subject-message")).to_contain_text("available → stopped")
    expect(page.locator("#job-log")).to_contain_text("stopped")
    assert aws_status(aws, database) == "stopped"
    tour.job_settled()  # the page reloads once at the job's end: not over the next click

    # Start now: the message's database link opens the action record, whose page shows
    # its job live and, once it ends, what AWS reported and how long it took.
    run_action(tour, database, "Start now")
    start = DatabaseAction.objects.get(action="start")
    message.get_by_role("link", name=database.name).click()
    expect(page).to_have_url(f"{tour.base_url}/admin/rds/databaseaction/{start.pk}/change/")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(page.locator("#job-subject-message")).to_contain_text("stopped → available")
    expect(page.locator("#job-subject-message")).to_contain_text("AWS took")
    expect(page.locator("#job-log")).to_contain_text("available")
    tour.job_settled()
    assert aws_status(aws, database) == "available"

    # Keep running until…: the form names the schedule's zone; a past time is refused and
    # what was typed stays; a time to come is taken, read in that zone.
    run_action(tour, database, "Keep running until…", status=200)
    expect(page.locator("#keep-running-zone")).to_have_text(SCHEDULE.time_zone)
    until = page.locator("#id_until")
    until.fill("2020-01-01T10:00")
    with tour.submitted(200):
        page.click("input[name=apply]")
    expect(page.locator(".errorlist")).to_contain_text("2020-01-01 10:00 Europe/Warsaw has passed")
    expect(until).to_have_value("2020-01-01T10:00")
    assert not DatabaseAction.objects.filter(action="start").exclude(pk=start.pk).exists()

    zone = ZoneInfo(SCHEDULE.time_zone)
    later = (datetime.now(zone) + timedelta(days=1)).replace(
        hour=18, minute=30, second=0, microsecond=0
    )
    until.fill(later.strftime("%Y-%m-%dT%H:%M"))
    with tour.submitted(302):
        page.click("input[name=apply]")
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Kept running until {later:%Y-%m-%d} 18:30"
    )
    expect(page.locator("ul.messagelist")).to_contain_text("(Europe/Warsaw)")
    database.refresh_from_db()
    assert database.keep_running_until == later
    tour.click_in_message("job and log")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(page.locator("#job-subject-state")).to_have_text("Nothing to do")
    tour.assert_pages_sound()
