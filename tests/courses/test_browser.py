"""Covers in a real headless Chromium: upload a cover on the course's page and watch its
variants appear there, without reloading it."""

from __future__ import annotations

import pytest

from courses.models import Course
from courses.services import course_cover_set
from tests.courses.conftest import make_course, upload
from tests.support.browser import Tour, wait_for
from workers.enqueue import Requester
from workers.models import DiagnosticRun, Job
from workers.services import diagnostic_run_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_a_cover_uploaded_on_the_course_page_gets_its_variants_shown_without_a_reload(
    tour: Tour, cover_jpeg: bytes
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    course = make_course("photography")
    # Both of the worker's processes are busy for a few seconds, so the page is certainly
    # on screen while the variants are still being made.
    for _ in range(2):
        diagnostic_run_start(requester=Requester.cli("test"), lines=40, duration_seconds=15)
    wait_for(lambda: DiagnosticRun.objects.filter(state="running").count() == 2, page)

    page.locator("#courses-course").get_by_role("link", name="Courses").click()
    page.locator("#result_list").get_by_role("link", name=course.title).click()
    page.set_input_files(
        "#id_new_cover",
        files=[{"name": "photo.jpg", "mimeType": "image/jpeg", "buffer": cover_jpeg}],
    )
    with tour.submitted(302):
        page.click("input[name=_continue]")

    course.refresh_from_db()
    expect(page.locator("ul.messagelist")).to_contain_text("its variants are being made")
    expect(
        page.locator("ul.messagelist").get_by_role("link", name="job and log")
    ).to_have_attribute("href", f"/ops/jobs/{course.cover_task_id}/")
    expect(page.locator("#cover-status")).to_have_text("Variants being made")
    pages_loaded, url = len(tour.documents), page.url
    tour.screenshot("course-cover-pending")

    expect(page.locator("#cover-variants img")).to_have_count(4, timeout=90_000)
    expect(page.locator("#cover-status")).to_have_text("Ready")
    expect(page.locator("#cover-variants")).to_contain_text("w800-webp")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    assert len(tour.documents) == pages_loaded and page.url == url, "no page was loaded"
    course.refresh_from_db()
    assert course.cover_status == Course.CoverStatus.READY
    tour.assert_pages_sound()


def test_the_outline_report_action_queues_a_django_task_whose_job_page_shows_it_run(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    course = make_course("photography")
    section = course.sections.create(title="Light", position=1)
    section.lessons.create(title="Exposure", position=1)

    page.locator("#courses-course").get_by_role("link", name="Courses").click()
    page.locator("#result_list").get_by_role("row", name=course.title).locator(
        "input.action-select"
    ).check()
    page.select_option("select[name=action]", label="Report the outline (Django task)")
    with tour.submitted(302):
        page.get_by_role("button", name="Go").click()

    expect(page.locator("ul.messagelist")).to_contain_text("Queued the outline report for")
    tour.click_in_message(course.title)
    expect(page.locator("#job-log")).to_contain_text("1. Light: 1 lesson", timeout=60_000)
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    # It ends in words, not a Python dict.
    expect(page.locator("#job-log")).to_contain_text("done: 1 section, 1 lesson of which")
    expect(page.locator("#job-log")).not_to_contain_text("{'course'")
    expect(page.locator("#job-live")).to_contain_text("User: ops · queue default")
    # The page says which course it reports on, as every other job's page names its record.
    expect(page.locator("#job-subject")).to_have_text(f"Outline of course {course.title}")
    expect(page.locator("#job-subject-state")).to_have_text("Published")
    tour.job_settled()

    # On the Jobs home like any job: its name, state and who asked.
    job = Job.objects.get(task_name="courses.tasks.course_outline_report")
    page.locator(".breadcrumbs").get_by_role("link", name="Home").click()
    row = page.locator(f'#recent-jobs tr[data-task-id="{job.task_id}"]')
    expect(row).to_contain_text("course_outline_report")
    expect(row).to_contain_text("Succeeded (SUCCESS)")
    expect(row).to_contain_text("ops")
    tour.assert_pages_sound()


def test_a_text_file_chosen_as_cover_is_refused_on_the_form_and_the_course_keeps_its_cover(
    tour: Tour, cover_jpeg: bytes
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    course = make_course("typing")
    course_cover_set(course_id=course.pk, upload=upload(cover_jpeg), requester=Requester.cli("t"))
    course.refresh_from_db()
    cover, task_id = course.cover.name, course.cover_task_id

    page.locator("#courses-course").get_by_role("link", name="Courses").click()
    page.locator("#result_list").get_by_role("link", name=course.title).click()
    page.fill("#id_title", "Typing, renamed")
    page.set_input_files(
        "#id_new_cover",
        files=[{"name": "notes.jpg", "mimeType": "image/jpeg", "buffer": b"my notes\n" * 50}],
    )
    with tour.submitted(200):
        page.click("input[name=_continue]")

    expect(page.locator(".errornote")).to_be_visible()
    expect(page.locator(".field-new_cover .errorlist")).to_contain_text(
        "This file is not a picture this site takes"
    )
    expect(page.locator("ul.messagelist")).to_have_count(0)  # no "being made" above it
    course.refresh_from_db()
    assert (course.title, course.cover.name, course.cover_task_id) == ("Typing", cover, task_id)
    tour.assert_pages_sound()


def test_a_course_page_left_open_stops_following_once_logged_out_in_another_tab(
    tour: Tour,
) -> None:
    """A course page left open while its cover's variants are made, its person logged out
    in another tab: the cover section and the job's log each say they stopped following,
    and why, and the page polls no more. The cover section read the login page it was sent
    to as a failed answer and polled for good, saying nothing; the log said only "Log
    unavailable (HTTP 403)"."""
    from playwright.sync_api import expect

    from tests.workers.jobs import job_row

    page = tour.page
    course = make_course("left-open")
    job = job_row("media_pipeline.tasks.course_cover_variants_build", "PENDING", queue="media")
    Course.objects.filter(pk=course.pk).update(
        cover="covers/originals/left-open.jpg",
        cover_sha256="a" * 64,
        cover_status=Course.CoverStatus.PENDING,
        cover_task_id=job.task_id,
    )
    page.locator("#courses-course").get_by_role("link", name="Courses").click()
    page.locator("#result_list").get_by_role("link", name=course.title).click()
    expect(page.locator("#cover-status")).to_have_text("Variants being made")
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url))
    wait_for(lambda: len(polls) >= 2, page)  # both follow the job

    other = page.context.new_page()
    other.goto(f"{tour.base_url}/admin/")
    other.locator("#logout-form").get_by_role("button", name="Log out").click()
    expect(other.locator("#content h1")).to_have_text("Logged out")
    other.close()

    expect(page.locator("#cover-live .live-stopped")).to_have_text(
        "Not following this any more: you are logged out. Log in again, then reload the page."
    )
    expect(page.locator("#job-poll-note")).to_have_text(
        "Not following the log any more: you are logged out, or may no longer see this job. "
        "Reload the page."
    )
    stopped = len(polls)
    page.wait_for_timeout(2500)  # the cover section polled every second, the log twice
    assert polls[stopped:] == [], polls[stopped:]
