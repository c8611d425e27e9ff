"""In a real headless Chromium, clicking what is on screen: the Jobs home at /admin/, the
diagnostic jobs it starts, each job's live page, and the operations page it links to."""

from __future__ import annotations

import re

import pytest
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from tests.infra_tasks.rds.support import aws_status, new_instance, register
from tests.support.browser import Tour
from tests.support.servers import AwsEndpoint
from workers.models import DiagnosticRun

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SECTIONS = ["Jobs", "Terraform", "Databases", "Releases", "Courses"]


def test_jobs_home_starts_the_diagnostic_job_whose_page_follows_it_live_to_success(
    tour: Tour, settings: object
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    settings.FLOWER_URL = "http://127.0.0.1:5555/"  # type: ignore[attr-defined]
    page.reload()  # the login landed here; look again now that Flower has an address
    expect(page.locator("#content h1")).to_have_text("Jobs home")
    captions = page.locator("#content-main .module caption a").all_text_contents()
    assert captions[: len(SECTIONS)] == SECTIONS, captions
    for place in ("Operations", "Infrastructure", "Flower"):
        expect(page.locator("#jobs-home").get_by_role("link", name=place)).to_be_visible()
    expect(page.get_by_role("link", name="View site")).to_have_count(0)
    tour.screenshot("jobs-home-empty")

    with tour.submitted(302):
        page.click("#run-diagnostic")

    # Landed on the job's page: the message links to it, and the summary follows the job.
    run = DiagnosticRun.objects.get()
    expect(page.locator("ul.messagelist a")).to_have_attribute("href", f"/ops/jobs/{run.task_id}/")
    log = page.locator("#job-log")
    expect(log).to_contain_text("diagnostic line 1/300")
    expect(page.locator("#job-live-status")).to_have_text("Running (STARTED)")
    expect(page.locator("#job-finished-at")).to_have_count(0)  # no end time while running
    expect(page.locator("#job-duration")).to_contain_text("running for")
    expect(page.locator("#job-subject")).to_have_text(f"Diagnostic run #{run.pk}")
    tour.screenshot("job-page-live")
    url_while_running = page.url
    lines_then = log.inner_text().count("\n")
    page.wait_for_function(
        "n => document.getElementById('job-log').innerText.split('\\n').length > n + 20",
        arg=lines_then,
    )
    assert page.url == url_while_running, "the log grew without a page load"

    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(log).to_contain_text("diagnostic line 300/300")
    expect(page.locator("#job-outcome")).to_contain_text('"lines": 300')
    expect(page.locator("#job-progress-text")).to_have_text("300 / 300")
    expect(page.locator("#job-subject-state")).to_have_text("Succeeded")
    expect(page.locator("#job-finished-at")).to_contain_text("UTC")
    assert re.fullmatch(r"\d+\.\d s", page.locator("#job-duration").inner_text())

    # The Jobs home lists it, as the job page says it ended.
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    row = page.locator(f'#recent-jobs tr[data-task-id="{run.task_id}"]')
    expect(row).to_contain_text("run_diagnostic")
    expect(row).to_contain_text("Diagnostic")
    expect(row).to_contain_text("Succeeded (SUCCESS)")
    expect(row).to_contain_text("User: ops")
    expect(row.locator("td").nth(5)).to_have_text(re.compile(r"^\d+\.\d s$"))
    tour.screenshot("jobs-home")
    tour.assert_pages_sound()


def test_failing_diagnostic_shows_its_error_and_the_operations_page_counts_it(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    with tour.submitted(302):
        page.click("#run-failing-diagnostic")

    expect(page.locator("#job-live-status")).to_have_text("Failed (FAILURE)")
    expect(page.locator("#job-outcome")).to_contain_text("DiagnosticFailure")
    page.locator("summary", has_text="Traceback").click()
    expect(page.locator("#job-traceback")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator("#job-subject-state")).to_have_text("Failed")
    assert TaskResult.objects.get().status == "FAILURE"

    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    expect(page.locator("#recent-jobs")).to_contain_text("Failed (FAILURE)")
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    expect(page.locator("#content h1")).to_have_text("Operations")
    failing = page.locator('#failing tr[data-task="workers.tasks.run_diagnostic"]')
    expect(failing.locator(".failures")).to_have_text("1")
    expect(page.locator('#states tr[data-state="FAILURE"] .hour')).to_have_text("1")
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    page.locator("#jobs-home").get_by_role("link", name="Infrastructure").click()
    expect(page.locator("#content h1")).to_have_text("Infrastructure")
    tour.assert_pages_sound()


def test_a_schedule_run_from_periodic_tasks_is_a_job_with_its_requester(
    tour: Tour, aws: AwsEndpoint
) -> None:
    """Periodic tasks → tick the nightly stop → "Run selected tasks now (as jobs)" → Go: the
    message links the job, whose page says who asked, and the database is stopped."""
    from playwright.sync_api import expect

    page = tour.page
    database = register(new_instance(aws))
    schedule = PeriodicTask.objects.get(name=f"rds: nightly stop of {database.name}")

    page.locator("#content-main").get_by_role("link", name="Periodic tasks").click()
    page.check(f'#result_list input[name="_selected_action"][value="{schedule.pk}"]')
    page.select_option("select[name=action]", label="Run selected tasks now (as jobs)")
    with tour.submitted(302):
        page.locator("#changelist-form button[name=index]").click()

    expect(page.locator("ul.messagelist")).to_contain_text("Queued 1 job(s): job ")
    page.locator("ul.messagelist a").first.click()
    expect(page).to_have_url(re.compile(r"/admin/django_celery_results/taskresult/\d+/change/$"))
    expect(page.locator(".field-requester")).to_contain_text("User: ops")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)", timeout=90_000)
    tour.job_settled()
    assert aws_status(aws, database) == "stopped"
    tour.assert_pages_sound()
