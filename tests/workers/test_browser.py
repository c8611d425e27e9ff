"""In a real headless Chromium, clicking what is on screen: the Jobs home at /admin/, the
diagnostic jobs it starts, each job's live page, and the operations page it links to."""

from __future__ import annotations

import json
import os
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import TaskResult

from tests.infra_tasks.rds.support import aws_status, new_instance, register
from tests.support.browser import PASSWORD, Tour, wait_for
from tests.support.servers import AwsEndpoint, WorkerProcess, new_queue_prefix, own_queues_create
from tests.workers.jobs import job_row
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
    tour.job_settled()  # the job's page reloads once when the job ends

    # The Jobs home lists it, as the job page says it ended.
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    row = page.locator(f'#recent-jobs tr[data-task-id="{run.task_id}"]')
    expect(row).to_contain_text("diagnostic_run_execute")
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
    tour.job_settled()  # the job's page reloads once when the job ends
    expect(page.locator("#job-outcome")).to_contain_text("DiagnosticFailure")
    page.locator("summary", has_text="Traceback").click()
    expect(page.locator("#job-traceback")).to_contain_text("Traceback (most recent call last)")
    expect(page.locator("#job-subject-state")).to_have_text("Failed")
    assert TaskResult.objects.get().status == "FAILURE"

    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    expect(page.locator("#recent-jobs")).to_contain_text("Failed (FAILURE)")
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    expect(page.locator("#content h1")).to_have_text("Operations")
    failing = page.locator('#failing tr[data-task="workers.tasks.diagnostic_run_execute"]')
    expect(failing.locator(".failures")).to_have_text("1")
    expect(page.locator('#states tr[data-state="FAILURE"] .hour')).to_have_text("1")
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    page.locator("#jobs-home").get_by_role("link", name="Infrastructure").click()
    expect(page.locator("#content h1")).to_have_text("Infrastructure")
    tour.assert_pages_sound()


def test_a_double_click_on_run_diagnostic_job_starts_one_job_and_back_allows_another(
    tour: Tour,
) -> None:
    from playwright.sync_api import Route, expect

    page = tour.page
    # The first click's request is held (a slow server), so the second click certainly
    # lands on the same page, as a person's double click on a busy machine does.
    held: list[Route] = []

    def hold(route: Route) -> None:
        held.append(route)

    page.route("**/ops/jobs/diagnostic/", hold)
    box = page.get_by_role("button", name="Run diagnostic job").bounding_box()
    assert box is not None
    # The mouse itself: Playwright's own click would wait for the first one's page.
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.click(x, y)
    wait_for(lambda: held, page)
    page.mouse.click(x, y)
    page.wait_for_timeout(500)
    sent = len(held)
    for extra in held[1:]:
        extra.abort()
    assert sent == 1, f"the double click sent {sent} requests"
    with tour.submitted(302):
        held[0].continue_()
    page.unroute("**/ops/jobs/diagnostic/")
    expect(page.locator("ul.messagelist")).to_contain_text("diagnostic job queued")
    assert DiagnosticRun.objects.count() == 1

    # Back on the Jobs home, its button works again: the guard holds one page's sending only.
    page.go_back()
    expect(page.locator("#content h1")).to_have_text("Jobs home")
    with tour.submitted(302):
        page.get_by_role("button", name="Run diagnostic job").click()
    expect(page.locator("ul.messagelist")).to_contain_text("diagnostic job queued")
    assert DiagnosticRun.objects.count() == 2
    tour.assert_pages_sound()


def test_the_job_list_search_says_what_it_searches_and_finds_a_job_by_its_short_task_name(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    with tour.submitted(302):
        page.click("#run-diagnostic")
    run = DiagnosticRun.objects.get()
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    page.locator("#jobs-home").get_by_role("link", name="All jobs").click()
    expect(page.locator("#searchbar_helptext")).to_contain_text("the start of its task's name")
    page.fill("#searchbar", "diagnostic_run_execute")
    page.locator("#changelist-search").get_by_role("button", name="Search").click()
    expect(page.locator("#result_list")).to_contain_text(run.task_id)
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

    expect(page.locator("ul.messagelist")).to_contain_text("Queued 1 job: job ")
    page.locator("ul.messagelist a").first.click()
    expect(page).to_have_url(re.compile(r"/admin/django_celery_results/taskresult/\d+/change/$"))
    expect(page.locator(".field-requester")).to_contain_text("User: ops")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)", timeout=90_000)
    tour.job_settled()
    assert aws_status(aws, database) == "stopped"
    tour.assert_pages_sound()


def test_failed_diagnostic_is_retried_from_its_page_and_both_jobs_link_each_other(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    with tour.submitted(302):
        page.click("#run-failing-diagnostic")
    original = DiagnosticRun.objects.get()
    expect(page.locator("#job-live-status")).to_have_text("Failed (FAILURE)")
    tour.job_settled()  # the page reloads once the job has ended: the retry button is new

    with tour.submitted(302):
        page.click("#job-retry")
    expect(page.locator("ul.messagelist")).to_contain_text("Queued again as job")
    expect(page.locator("#job-retry-of")).to_have_text(f"job {original.task_id}")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(page.locator("#job-live-status")).to_contain_text("Succeeded")
    new = TaskResult.objects.exclude(task_id=original.task_id).get()
    assert new.status == "SUCCESS"
    assert display_requester(new.task_id) == "User: ops"
    tour.job_settled()
    tour.screenshot("job-retried")

    page.click("#job-retry-of")
    expect(page.locator("#job-retries a")).to_have_text(f"job {new.task_id}")
    expect(page.locator("#job-retry-refusal")).to_contain_text("retried already")
    expect(page.locator("#job-retry")).to_have_count(0)
    page.locator("#job-retries a").click()
    expect(page.locator("#job-retry-of")).to_have_text(f"job {original.task_id}")
    tour.assert_pages_sound()


def test_a_failed_terraform_apply_found_by_filter_says_plan_again_instead_of_retrying(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    job_row("infra_tasks.terraform.tasks.run_apply_execute", "FAILURE", queue="infra")
    job_row("workers.tasks.diagnostic_run_execute", "FAILURE")
    page = tour.page
    page.locator("#all-jobs").click()
    expect(page.locator("#result_list tbody tr")).to_have_count(2)
    page.locator("#changelist-filter").get_by_role("link", name="Terraform", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    page.locator("#changelist-filter").get_by_role("link", name="infra", exact=True).click()
    expect(page.locator("#result_list tbody tr")).to_have_count(1)
    tour.screenshot("jobs-filtered")
    page.locator("#result_list tbody tr th a").click()
    expect(page.locator("#job-retry-refusal")).to_contain_text("Plan again instead")
    expect(page.locator("#job-retry")).to_have_count(0)
    tour.assert_pages_sound()


def display_requester(task_id: str) -> str:
    from workers.models import Job

    return Job.objects.get(task_id=task_id).requester


def test_bulk_retry_of_every_failed_job_matching_a_filter_asks_once_and_queues_500(
    tour: Tour,
) -> None:
    from django.contrib.admin.models import CHANGE, LogEntry
    from playwright.sync_api import expect

    from tests.workers.jobs import job_row
    from workers.models import Job

    # Runs of a diagnostic that no longer exists: the retries end quickly on the worker.
    failed = {
        job_row("workers.tasks.diagnostic_run_execute", "FAILURE", args=[0]).task_id
        for _ in range(500)
    }
    job_row("workers.tasks.diagnostic_run_execute", "SUCCESS", args=[0])
    page = tour.page
    page.locator("#all-jobs").click()
    filters = page.locator("#changelist-filter")
    filters.get_by_role("link", name="Diagnostic", exact=True).click()
    filters.get_by_role("link", name="Failed (FAILURE)", exact=True).click()
    page.locator("#action-toggle").check()
    page.locator(".actions .question a").click()  # "Select all … jobs"
    page.locator("select[name=action]").select_option("retry_jobs")
    page.locator(".actions button[name=index]").click()

    expect(page.locator("#bulk-count")).to_have_text(
        "All 500 jobs matching the filter will be retried."
    )
    tour.screenshot("jobs-bulk-retry-confirm")
    with tour.submitted(302):
        page.locator("#bulk-confirm").click()
    said = page.locator("ul.messagelist li.success")
    expect(said).to_contain_text("Retried: 500 jobs, as ")
    expect(said).to_contain_text("and 490 more.")
    retries = Job.objects.filter(retry_of__isnull=False)
    assert retries.count() == 500
    assert set(retries.values_list("retry_of__task_id", flat=True)) == failed
    assert set(retries.values_list("requester_label", flat=True)) == {"ops"}
    # One entry per job retried, on its record (and job_enqueue's own on each new job).
    assert (
        LogEntry.objects.filter(action_flag=CHANGE, change_message__startswith="Retried as").count()
        == 500
    )
    # The message links the new jobs, as every message that queues work links what it
    # queued: the first opens a retry's page.
    said.locator("a").first.click()
    page.wait_for_url(re.compile(r"/taskresult/\d+/change/$"))
    shown = TaskResult.objects.get(pk=page.url.rstrip("/").split("/")[-2])
    assert retries.filter(task_id=shown.task_id).exists()
    tour.assert_pages_sound()


@pytest.mark.parametrize(
    ("action", "status", "age_days", "first", "second"),
    [
        (
            "retry_jobs",
            "FAILURE",
            0,
            "Retried: 1 job, as ",
            "1 left alone: job {id} was retried already, as job ",
        ),
        (
            "discard_jobs",
            "FAILURE",
            0,
            "Discarded: 1 job.",
            "1 left alone: job {id} was discarded already, by ops",
        ),
        (
            "delete_old_jobs",
            "SUCCESS",
            8,
            "Deleted: 1 job.",
            "1 left alone: no record of it any more",
        ),
    ],
)
def test_a_bulk_action_confirmed_again_from_a_second_tab_says_what_became_of_the_job(
    tour: Tour, action: str, status: str, age_days: int, first: str, second: str
) -> None:
    """Both tabs counted the job; the second confirmation found it done by the first and
    said only "Retried: 0 jobs.", as if the click had been lost."""
    from datetime import timedelta

    from playwright.sync_api import expect

    job = job_row(
        "workers.tasks.diagnostic_run_execute",
        status,
        args=[0],
        created_ago=timedelta(days=age_days, minutes=5),
    )
    tabs = [tour.page, tour.page.context.new_page()]
    for page in tabs:
        page.goto(f"{tour.base_url}/admin/")
        page.locator("#all-jobs").click()
        page.locator("#result_list tbody input.action-select").check()
        page.locator("select[name=action]").select_option(action)
        page.locator(".actions button[name=index]").click()
        expect(page.locator("#bulk-count")).to_have_text(re.compile(r"^The selected job will be"))

    with tour.submitted(302):
        tabs[0].locator("#bulk-confirm").click()
    expect(tabs[0].locator("ul.messagelist")).to_contain_text(first)
    tabs[1].locator("#bulk-confirm").click()
    messages = tabs[1].locator("ul.messagelist")
    expect(messages.locator("li.success")).to_have_text(first.split(":")[0] + ": 0 jobs.")
    expect(messages.locator("li.warning")).to_contain_text(second.format(id=job.task_id))
    tour.assert_pages_sound()


def test_pausing_the_media_queue_holds_a_cover_job_until_the_queue_is_resumed(
    tour: Tour, worker: WorkerProcess
) -> None:
    from django.contrib.admin.models import LogEntry
    from django.core.files.base import ContentFile
    from playwright.sync_api import expect

    from courses.models import Course
    from courses.services import course_cover_set
    from media_pipeline.samples import jpeg_bytes, photo
    from workers.enqueue import Requester
    from workers.models import Job

    page = tour.page
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    media = page.locator('#queue-control tr[data-queue-control="media"]')
    expect(media.locator(".queue-state")).to_have_text("running")
    with tour.submitted(302):
        page.click("#pause-media")
    expect(page.locator("ul.messagelist")).to_contain_text("Queue media paused")
    expect(media.locator(".queue-state")).to_contain_text("paused by ops")
    wait_for(lambda: "queue media paused: stop consuming" in worker.log_text(), page)

    course = Course.objects.create(title="Paused", slug="paused")
    course = course_cover_set(
        course_id=course.pk,
        upload=ContentFile(jpeg_bytes(photo(400, 300, seed=3)), name="cover.jpg"),
        requester=Requester.cli("test"),
    )
    task_id = course.cover_task_id
    wait_for(lambda: Job.objects.filter(task_id=task_id, sent_at__isnull=False).exists(), page)
    # Many pause checks and SQS polls later, no worker has taken it.
    page.wait_for_timeout(3000)
    assert TaskResult.objects.get(task_id=task_id).status == "PENDING"
    page.reload()
    expect(media.locator(".latency")).not_to_have_text("nothing waits")
    tour.screenshot("operations-queue-paused")

    # The job's own page says why it waits, from the Jobs home's list of recent jobs.
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    page.locator(f'tr[data-task-id="{task_id}"] a').first.click()
    expect(page.locator("#job-queue-paused")).to_have_text(
        "Queue media is paused (by ops): the job waits until it is resumed on the operations page."
    )
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()

    with tour.submitted(302):
        page.click("#resume-media")
    expect(media.locator(".queue-state")).to_have_text("running")
    wait_for(lambda: TaskResult.objects.get(task_id=task_id).status == "SUCCESS", page)
    assert Course.objects.get(pk=course.pk).cover_status == Course.CoverStatus.READY
    messages = list(LogEntry.objects.order_by("pk").values_list("change_message", flat=True))
    assert messages[-2:] == ["Paused queue media", "Resumed queue media"]
    tour.assert_pages_sound()


def test_run_now_on_the_jobs_home_queues_the_recurring_task_as_the_person(tour: Tour) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from playwright.sync_api import expect

    # The migration's schedule, made again if an earlier test's flush removed it.
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    schedule, _ = PeriodicTask.objects.update_or_create(
        name="Record SQS queue depths",
        defaults={
            "task": "workers.tasks.queue_depths_record",
            "interval": every_minute,
            "last_run_at": None,
        },
    )
    page = tour.page
    page.reload()
    row = page.locator('#recurring tr[data-schedule="Record SQS queue depths"]')
    expect(row).to_contain_text("every 60 seconds")
    expect(row).to_contain_text("UTC")
    expect(row.locator(".next-run")).to_contain_text("UTC")
    tour.screenshot("jobs-home-recurring")
    with tour.submitted(302):
        row.get_by_role("button", name="Run now").click()
    expect(page.locator("ul.messagelist")).to_contain_text("Queued now")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    # The page reloads when the job ends; what was just done is still said after it.
    expect(page.locator("#job-live")).to_have_attribute("data-settled", "1")
    expect(page.locator("ul.messagelist")).to_contain_text("Queued now")
    result = TaskResult.objects.get()
    assert display_requester(result.task_id) == "User: ops"
    schedule.refresh_from_db()
    assert schedule.last_run_at is None  # the schedule itself is left as it was
    tour.job_settled()
    tour.assert_pages_sound()


def test_each_run_now_and_pause_button_says_what_it_acts_on_and_the_keyboard_presses_it(
    tour: Tour,
) -> None:
    """The Jobs home's 14 schedules each had a button named just "Run now" (the operations
    page's queues "Pause"): tabbing through them, a keyboard or screen-reader user heard the
    same name 14 times and could not tell which one Enter would run. Each is named for its
    schedule (its queue) now; Tab reaches it and Enter runs that one."""
    from django_celery_beat.models import IntervalSchedule
    from playwright.sync_api import expect

    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    for name, task in (
        ("Record SQS queue depths", "workers.tasks.queue_depths_record"),
        ("Reconcile lost jobs", "workers.tasks.jobs_mark_lost"),
    ):
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": every_minute}
        )
    page = tour.page
    page.reload()
    wanted = "Run now: Record SQS queue depths"
    expect(page.get_by_role("button", name=wanted, exact=True)).to_have_count(1)
    for _ in range(60):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.getAttribute('aria-label')") == wanted:
            break
    else:
        raise AssertionError(f"Tab never reached {wanted!r}")
    assert page.evaluate("document.activeElement.matches(':focus-visible')")
    with tour.submitted(302):
        page.keyboard.press("Enter")
    expect(page.locator("ul.messagelist")).to_contain_text("Queued now")
    result = TaskResult.objects.get()
    assert result.task_name == "workers.tasks.queue_depths_record", result.task_name
    tour.job_settled()

    page.locator("#site-name a").click()
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    for queue in ("default", "media", "infra", "release"):
        pause = page.get_by_role("button", name=f"Pause the {queue} queue", exact=True)
        expect(pause).to_have_count(1)
    tour.assert_pages_sound()


def test_a_finished_job_that_wrote_no_log_says_so_instead_of_an_empty_box(tour: Tour) -> None:
    from playwright.sync_api import expect

    result = job_row("workers.tasks.jobs_mark_lost", "SUCCESS")
    page = tour.page
    page.goto(f"{tour.base_url}/ops/jobs/{result.task_id}/")
    expect(page.locator("#job-live")).to_have_attribute("data-settled", "1")
    expect(page.locator("#job-log")).to_have_text("The job wrote no log lines.")
    tour.assert_pages_sound()


def test_a_schedule_for_a_task_that_needs_arguments_is_refused_until_they_are_given(
    tour: Tour,
) -> None:
    """Periodic tasks → Add: the task picker offers each task under its current name only,
    and the crontab's help reads no "undefined". A schedule of the diagnostic job without
    its run's id used to be saved; each firing then failed before reaching SQS. The form
    now says what the task needs, and saves once it is given."""
    from django_celery_beat.models import IntervalSchedule
    from playwright.sync_api import expect

    IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    page = tour.page
    page.locator("#content-main").get_by_role("link", name="Periodic tasks").click()
    page.get_by_role("link", name="Add periodic task").click()
    expect(page.locator("#content h1")).to_have_text("Add periodic task")
    offered = page.locator("#id_regtask option").all_inner_texts()
    assert "workers.tasks.diagnostic_run_execute" in offered
    assert "workers.tasks.run_diagnostic" not in offered  # its former name
    expect(page.locator(".field-crontab .help")).not_to_contain_text("undefined")

    page.fill("#id_name", "diagnostic every minute")
    page.select_option("#id_regtask", "workers.tasks.diagnostic_run_execute")
    page.select_option("#id_interval", label="every 60 seconds")
    with tour.submitted(200):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-args .errorlist")).to_have_text(
        "workers.tasks.diagnostic_run_execute does not take these arguments: "
        "diagnostic_run_execute() missing 1 required positional argument: 'run_id'."
    )
    assert not PeriodicTask.objects.filter(name="diagnostic every minute").exists()

    run = DiagnosticRun.objects.create(lines=3, duration_seconds=0.1)
    page.fill("#id_args", f"[{run.pk}]")
    with tour.submitted(302):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    assert PeriodicTask.objects.get(name="diagnostic every minute").args == f"[{run.pk}]"
    tour.assert_pages_sound()


def test_a_job_link_or_the_operations_page_opened_while_logged_out_opens_after_the_login(
    tour: Tour,
) -> None:
    """A link to a job (from a message, a mail, a colleague) or to the operations page,
    opened by someone logged out, used to answer a bare "403 Forbidden": nothing said that
    logging in would open it. It now asks for the login and then shows the page asked for."""
    from playwright.sync_api import expect

    result = job_row("workers.tasks.jobs_mark_lost", "SUCCESS")
    page = tour.page
    for address, landed in (
        (
            f"/ops/jobs/{result.task_id}/",
            f"/admin/django_celery_results/taskresult/{result.pk}/change/",
        ),
        ("/ops/operations/", "/ops/operations/"),
    ):
        with tour.submitted(200):
            page.locator("#logout-form").get_by_role("button", name="Log out").click()
        expect(page.locator("#content h1")).to_have_text("Logged out")
        page.goto(f"{tour.base_url}{address}")
        expect(page.locator("#id_username")).to_be_visible()
        page.fill("#id_username", "ops")
        page.fill("#id_password", PASSWORD)
        with tour.submitted(302):
            page.click("input[type=submit]")
        expect(page).to_have_url(f"{tour.base_url}{landed}")
        if address.startswith("/ops/jobs/"):
            expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(page.locator("#content h1")).to_have_text("Operations")
    tour.assert_pages_sound()


def test_the_logout_address_typed_in_offers_the_log_out_button_instead_of_an_error(
    tour: Tour,
) -> None:
    """/admin/logout/ typed into the address bar (or bookmarked) is a GET: Django answered
    405 with an empty body and Chromium showed "This page isn't working". It now asks, and
    its button logs out; the address alone logs no one out."""
    from playwright.sync_api import expect

    page = tour.page
    response = page.goto(f"{tour.base_url}/admin/logout/")
    assert response is not None and response.status == 200, response and response.status
    expect(page.locator("#content h1")).to_have_text("Log out?")
    page.get_by_role("link", name="Stay logged in").click()
    expect(page.locator("#content h1")).to_have_text("Jobs home")
    page.goto(f"{tour.base_url}/admin/logout/")
    with tour.submitted(200):
        page.locator("#logout-confirm").get_by_role("button", name="Log out").click()
    expect(page.locator("#content h1")).to_have_text("Logged out")
    page.goto(f"{tour.base_url}/admin/")
    expect(page.locator("#id_username")).to_be_visible()
    tour.assert_pages_sound()


def periodic_task_form_opened(tour: Tour, name: str) -> Any:
    """Periodic tasks → Add, as a person fills it in: `name`, the queue-depths task every
    60 seconds, and Execution Options opened. Returns the page."""
    from django_celery_beat.models import IntervalSchedule

    IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    page = tour.page
    page.locator("#content-main").get_by_role("link", name="Periodic tasks").click()
    page.get_by_role("link", name="Add periodic task").click()
    page.fill("#id_name", name)
    page.select_option("#id_regtask", "workers.tasks.queue_depths_record")
    page.select_option("#id_interval", label="every 60 seconds")
    page.locator("summary", has_text="Execution Options").click()
    return page


def test_a_crontab_refuses_a_bad_hour_and_a_sunday_7_in_words_and_saves_once_corrected(
    tour: Tour,
) -> None:
    """Crontabs → Add: a bad hour read `"No enumeration for Hours: 'abc'"`, the library's
    text; a day of the week 7, which the field's own help offered for Sunday, was saved, and
    beat then skipped its schedule without a word (Celery takes 0-6 only)."""
    from django_celery_beat.models import CrontabSchedule
    from playwright.sync_api import expect

    page = tour.page
    page.locator("#content-main").get_by_role("link", name="Crontabs").click()
    page.get_by_role("link", name="Add crontab").click()
    expect(page.locator(".field-day_of_week .help")).to_contain_text("Sunday is 0, Monday 1")
    page.fill("#id_minute", "0")
    page.fill("#id_hour", "abc")
    page.fill("#id_day_of_week", "7")
    with tour.submitted(200):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-hour .errorlist")).to_have_text(
        '"abc" is not valid here: use hours 0-23, e.g. "8", "8,20", "9-17" or "*".'
    )
    expect(page.locator(".field-day_of_week .errorlist")).to_have_text(
        '"7" is not valid here: use days of the week 0-6 (Sunday is 0) or sun-sat, '
        'e.g. "1-5", "mon-fri" or "*".'
    )
    assert not CrontabSchedule.objects.filter(day_of_week="7").exists()

    page.fill("#id_hour", "6")
    page.fill("#id_day_of_week", "0")
    with tour.submitted(302):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    assert CrontabSchedule.objects.filter(minute="0", hour="6", day_of_week="0").exists()
    tour.assert_pages_sound()


def test_a_schedule_whose_headers_are_no_json_object_is_refused_and_keeps_what_was_typed(
    tour: Tour,
) -> None:
    """Periodic tasks → Add → Execution Options: headers `[1]` were saved as they were, and
    beat, reading them, exited at every start (taking `make run` with it); text that is not
    JSON was saved too, and its schedule never fired. The form now refuses both, keeps the
    rest of what was typed, and saves once the headers are an object."""
    from playwright.sync_api import expect

    page = periodic_task_form_opened(tour, "depths with headers")
    for typed, refusal in (
        ("[1]", 'Headers are a JSON object, e.g. {"x-team": "ops"}.'),
        ("{not json", "Unable to parse JSON"),
    ):
        page.fill("#id_headers", typed)
        with tour.submitted(200):
            page.get_by_role("button", name="Save", exact=True).click()
        expect(page.locator(".field-headers .errorlist")).to_contain_text(refusal)
        expect(page.locator("#id_name")).to_have_value("depths with headers")
        expect(page.locator("#id_headers")).to_have_value(typed)
        assert not PeriodicTask.objects.filter(name="depths with headers").exists()

    page.fill("#id_headers", '{"x-team": "ops"}')
    with tour.submitted(302):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    saved = PeriodicTask.objects.get(name="depths with headers")
    assert json.loads(saved.headers) == {"x-team": "ops"}
    tour.assert_pages_sound()


def test_a_schedule_for_a_queue_no_worker_reads_is_refused_and_saves_without_one(
    tour: Tour,
) -> None:
    """Periodic tasks → Add → Execution Options → Queue: a name that is not one of the
    project's queues was saved, and every firing's job then read Queued (PENDING) for good,
    sent where no worker reads. The form now names the queues there are."""
    from playwright.sync_api import expect

    page = periodic_task_form_opened(tour, "depths on a queue")
    page.fill("#id_queue", "bogus")
    with tour.submitted(200):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-queue .errorlist")).to_have_text(
        "No worker reads a queue named “bogus”. Leave it empty for the task's own queue, "
        "or name one of: default, media, infra, release."
    )
    expect(page.locator("#id_name")).to_have_value("depths on a queue")
    assert not PeriodicTask.objects.filter(name="depths on a queue").exists()

    page.fill("#id_queue", "")
    with tour.submitted(302):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    assert PeriodicTask.objects.get(name="depths on a queue").queue is None


def test_a_schedule_routed_elsewhere_than_its_queue_is_refused_keeping_what_was_typed(
    tour: Tour,
) -> None:
    """Periodic tasks → Add → Execution Options → Exchange and Routing key: Celery prefers
    them to the queue's own, and on SQS `bogus` reached no queue at all, each firing's job
    Queued (PENDING) for good. The form takes them empty or the queue's own."""
    from playwright.sync_api import expect

    page = periodic_task_form_opened(tour, "depths routed")
    page.fill("#id_exchange", "bogus")
    page.fill("#id_routing_key", "media")
    with tour.submitted(200):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-exchange .errorlist")).to_have_text(
        "On SQS a job goes to its queue; leave the exchange empty (or “default”), not “bogus”."
    )
    expect(page.locator("#id_exchange")).to_have_value("bogus")
    expect(page.locator("#id_routing_key")).to_have_value("media")
    expect(page.locator("#id_name")).to_have_value("depths routed")
    assert not PeriodicTask.objects.filter(name="depths routed").exists()

    page.fill("#id_exchange", "")
    with tour.submitted(200):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".field-routing_key .errorlist")).to_have_text(
        "On SQS a job goes to its queue; leave the routing key empty (or the queue's name, "
        "“default”), not “media”."
    )
    assert not PeriodicTask.objects.filter(name="depths routed").exists()

    page.fill("#id_routing_key", "default")
    with tour.submitted(302):
        page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator("ul.messagelist")).to_contain_text("was added successfully")
    assert PeriodicTask.objects.get(name="depths routed").routing_key == "default"
    tour.assert_pages_sound()


def test_a_job_waiting_where_no_worker_consumes_says_so_until_a_worker_takes_it(
    tour: Tour,
    worker: WorkerProcess,
    worker_env: dict[str, str],
    run_dir: Path,
    sqs_queues: AwsEndpoint,
    settings: object,
) -> None:
    """A worker consumes a queue of this test's own and is stopped, and a job is queued
    there: the Jobs home and the job's page say no worker takes from that queue; a new
    worker takes it, and both stop saying so. The session's shared worker, which reads every
    queue's name, is frozen meanwhile (a frozen worker is one way a queue loses its
    consumer)."""
    from django.utils import timezone
    from playwright.sync_api import expect

    from tests.support.jobs import diagnostic_queued
    from workers.models import Job
    from workers.operations import queues_without_consumer

    # The workers below beat every half second; the pages judge them by that interval.
    settings.WORKER_HEARTBEAT_SECONDS = 0.5  # type: ignore[attr-defined]
    page = tour.page
    prefix = new_queue_prefix()
    own_queues_create(sqs_queues, prefix)
    env = {**worker_env, "SQS_QUEUE_PREFIX": prefix, "WORKER_HEARTBEAT_SECONDS": "0.5"}
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        first = WorkerProcess(env=env, queues=["default"], log_dir=run_dir, name="idle-first")
        try:
            wait_for(first.has_received, page)
        finally:
            first.stop()
        run = diagnostic_queued(prefix, queue="default", duration_seconds=0.1)
        wait_for(
            lambda: Job.objects.filter(task_id=run.task_id, sent_at__isnull=False).exists(), page
        )

        # The stopped worker's last heartbeat goes stale three beats later.
        wait_for(lambda: "default" in queues_without_consumer(now=timezone.now()), page)
        page.reload()
        idle = page.locator("#idle-queues")
        expect(idle).to_contain_text("Jobs are waiting where no worker takes them now")
        expect(idle.locator("[data-queue]")).to_have_count(1)
        expect(idle.locator('[data-queue="default"]')).to_contain_text(
            "the default queue (a worker last received from it 20"
        )
        tour.screenshot("jobs-home-no-consumer")
        idle.get_by_role("link", name="See the workers").click()
        expect(page).to_have_url(re.compile(r"/ops/operations/$"))
        page.go_back()

        page.locator(f'#recent-jobs tr[data-task-id="{run.task_id}"] a').click()
        expect(page.locator("#job-live-status")).to_have_text("Queued (PENDING)")
        warning = page.locator("#job-no-consumer")
        expect(warning).to_contain_text(
            "No worker is taking jobs from the default queue now (one last received from it 20"
        )
        expect(warning).to_contain_text("UTC); it will start once one does.")
        expect(
            warning.get_by_role("link", name="See the workers on the operations page")
        ).to_be_visible()
        tour.screenshot("job-page-no-consumer")

        # The job's page stays open: its poll drops the warning once a worker takes the job.
        second = WorkerProcess(env=env, queues=["default"], log_dir=run_dir, name="idle-second")
        try:
            expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
            expect(warning).to_have_count(0)
            tour.job_settled()
            page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
            expect(page.locator(f'#recent-jobs tr[data-task-id="{run.task_id}"]')).to_contain_text(
                "Succeeded (SUCCESS)"
            )
            expect(page.locator("#idle-queues")).to_have_count(0)
        finally:
            second.stop()
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    tour.assert_pages_sound()


def test_the_jobs_home_on_a_phone_fits_the_screen_and_its_jobs_table_scrolls_in_its_box(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    result = job_row(
        "media_pipeline.tasks.course_cover_variants_build",
        "FAILURE",
        queue="media",
        requester="a-newcomer-with-a-long-login",
    )
    page = tour.page
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    row = page.locator(f'#recent-jobs tr[data-task-id="{result.task_id}"]')
    expect(row).to_contain_text("Failed (FAILURE)")
    tour.screenshot("jobs-home-phone")
    # The page itself does not scroll sideways: the jobs' table, wider than a phone, made
    # it three screens wide (1104 px on a 375 px screen).
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]}px wide on a {widths[1]}px screen"
    # A job's state is brought into view by scrolling the table's own box, as on the job
    # list, with the page left where it was.
    state = row.locator("td.job-state")
    state.scroll_into_view_if_needed()
    assert page.evaluate("window.scrollX") == 0
    box = state.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box
    tour.assert_pages_sound()


def test_the_operations_page_on_a_phone_fits_the_screen_with_each_queue_s_pause_button(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    expect(page.locator("#content h1")).to_have_text("Operations")
    tour.screenshot("operations-phone")
    # Its columns were 420 px at least: the page was wider than the screen (455 px on
    # 375) and the queues' Pause buttons beyond its edge.
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1], f"the page is {widths[0]}px wide on a {widths[1]}px screen"
    buttons = page.locator("#queue-control").get_by_role("button", name="Pause")
    expect(buttons.first).to_be_visible()
    for index in range(buttons.count()):
        box = buttons.nth(index).bounding_box()
        assert box is not None and box["x"] + box["width"] <= 375, box
    tour.assert_pages_sound()


# Wider than anything the admin's own layout needs: a hash that cannot break, a progress
# bar of fixed width, tables of many columns.
COVER_HASH = "9f" * 32


def _assert_fits_a_phone(page: Any, what: str) -> None:
    widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    widest = page.evaluate(
        """() => [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1)
            .slice(-3).map(e => e.tagName + '#' + e.id + '.' + e.className)"""
    )
    assert widths[0] <= widths[1], (
        f"{what} is {widths[0]}px wide on a {widths[1]}px screen: {widest}"
    )
    # Its controls are on the screen, not beyond its edge.
    for control in page.locator("#content input[type=submit], #content button").all():
        box = control.bounding_box()
        if box is not None:
            assert box["x"] + box["width"] <= widths[1], (what, control.inner_html(), box)


def test_job_terraform_run_course_and_infrastructure_pages_on_a_phone_fit_the_screen(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    from courses.models import Course
    from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
    from tests.courses.conftest import make_course
    from workers.models import Job

    # A job midway (its progress bar) whose result holds a hash, as a cover job's does.
    result = job_row("media_pipeline.tasks.course_cover_variants_build", "SUCCESS", queue="media")
    TaskResult.objects.filter(pk=result.pk).update(
        result=json.dumps({"course": 1, "source_sha256": COVER_HASH, "made": 4})
    )
    Job.objects.filter(task_id=result.task_id).update(progress_done=2, progress_total=4)
    course = make_course("photography")
    Course.objects.filter(pk=course.pk).update(cover_task_id=result.task_id)
    workspace = TerraformWorkspace.objects.create(name="a-workspace-of-the-team", directory="demo")
    run = TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.APPLIED,
        plan_task_id=result.task_id,
        apply_task_id=result.task_id,
        plan_sha256=COVER_HASH,
        requester_label="a-newcomer-with-a-long-login",
    )
    register("db-with-a-long-identifier-0001")

    page = tour.page
    page.set_viewport_size({"width": 375, "height": 800})
    page.reload()
    page.locator(f'#recent-jobs tr[data-task-id="{result.task_id}"] a').first.click()
    expect(page.locator("#job-outcome")).to_contain_text(COVER_HASH)
    expect(page.locator("#job-progress")).to_be_visible()
    _assert_fits_a_phone(page, "the job page")

    page.locator("#site-name a").click()
    page.locator("#jobs-home").get_by_role("link", name="Operations").click()
    page.locator("#content").get_by_role("link", name="Infrastructure").click()
    expect(page.locator("#dashboard-terraform-runs")).to_be_visible()
    _assert_fits_a_phone(page, "the Infrastructure page")
    # Each table scrolls in its own box: its last column is brought into view there.
    last = page.locator("#dashboard-terraform-runs tbody tr td").last
    last.scroll_into_view_if_needed()
    assert page.evaluate("window.scrollX") == 0
    box = last.bounding_box()
    assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 375, box

    page.locator("#dashboard-terraform-runs").get_by_role("link", name=f"#{run.pk}").click()
    expect(page.locator("#job-outcome").first).to_contain_text(COVER_HASH)
    _assert_fits_a_phone(page, "the terraform run page")

    page.locator("#site-name a").click()
    page.locator("#courses-course").get_by_role("link", name="Courses").click()
    page.locator("#result_list").get_by_role("link", name=course.title).click()
    expect(page.locator("#job-outcome")).to_contain_text(COVER_HASH)
    _assert_fits_a_phone(page, "the course page")
    tour.assert_pages_sound()
