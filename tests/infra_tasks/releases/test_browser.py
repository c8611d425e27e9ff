"""Releases in a real headless Chromium, clicking what is on screen: Run pending migrations
from the Jobs home, its preview, the job's live page, and the release record with its log."""

from __future__ import annotations

import pytest

from infra_tasks.releases.models import Release, ReleaseState
from tests.infra_tasks.releases.support import probe_applied, probe_at
from tests.support.browser import Tour

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("probe_restored"),
]


def test_run_pending_migrations_previews_the_plan_then_follows_the_release_to_its_log(
    tour: Tour,
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    probe_at("0002")

    page.locator("#start-here").get_by_role("link", name="Run pending migrations").click()
    plan = page.locator("#release-plan")
    for name in ("0003_widget_colour", "0004_hold", "0005_fail"):
        expect(plan).to_contain_text(name)
    assert not Release.objects.exists(), "previewing queues nothing"
    # The form is laid out as the admin's other forms: each label beside its field (it once
    # stood above, help and field stacked under it, the checkbox alone on a line).
    for label, field in (
        ("Version:", "#id_version"),
        ("Allow backward-incompatible migrations", "#id_allow_unsafe"),
    ):
        # Both measured at one instant: the page may still be growing above the form.
        label_box, field_box = page.evaluate(
            """([text, field]) => [
                [...document.querySelectorAll("label")].find((l) => l.textContent.includes(text)),
                document.querySelector(field),
            ].map((element) => element.getBoundingClientRect().toJSON())""",
            [label, field],
        )
        assert abs(label_box["y"] - field_box["y"]) < label_box["height"], label
    tour.screenshot("release-run-form")
    page.fill("#id_version", "browser-1")
    with tour.submitted(302):
        page.get_by_role("button", name="Run the release").click()

    release = Release.objects.get(version="browser-1")
    expect(page.locator("ul.messagelist")).to_contain_text(
        f"Release browser-1 queued as job {release.task_id}"
    )
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)", timeout=90_000)
    expect(page.locator("#job-subject-state")).to_have_text("Succeeded")
    expect(page.locator("#job-log")).to_contain_text("release_probe.0005_fail")
    release.refresh_from_db()
    assert (release.state, release.applied) == (ReleaseState.SUCCEEDED, 3)
    assert probe_applied()[-1] == "0005_fail"
    tour.job_settled()  # the page reloads once at the job's end: not over the next click

    # The release record: its job's summary and log inline, and its plan.
    page.locator("#job-subject").click()
    expect(page.locator(".breadcrumbs")).to_contain_text("browser-1")
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)")
    expect(page.locator("#job-log")).to_contain_text("release_probe.0005_fail")
    expect(page.locator("#content-main")).to_contain_text("not allowed (the default)")
    expect(page.locator("#content-main table").last).to_contain_text("0003_widget_colour")
    tour.assert_pages_sound()


def test_a_failed_release_is_run_again_from_its_page_under_the_same_version(tour: Tour) -> None:
    from playwright.sync_api import expect

    from tests.infra_tasks.releases.probe.models import Switch

    page = tour.page
    probe_at("0004")
    Switch.objects.create(name="fail")
    page.locator("#start-here").get_by_role("link", name="Run pending migrations").click()
    page.fill("#id_version", "browser-again")
    with tour.submitted(302):
        page.get_by_role("button", name="Run the release").click()
    expect(page.locator("#job-live-status")).to_have_text("Failed (FAILURE)", timeout=90_000)
    tour.job_settled()

    Switch.objects.all().delete()  # what was wrong is fixed
    page.locator("#job-subject").click()
    page.get_by_role("link", name="Run this release again…").click()
    expect(page.locator("#release-plan")).to_contain_text("0005_fail")
    expect(page.locator("#id_version")).to_have_value("browser-again")
    with tour.submitted(302):
        page.get_by_role("button", name="Run the release").click()
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)", timeout=90_000)
    release = Release.objects.get(version="browser-again")
    assert release.state == ReleaseState.SUCCEEDED
    assert probe_applied()[-1] == "0005_fail"
    tour.job_settled()
    page.locator("#job-subject").click()
    expect(page.get_by_role("link", name="Run this release again…")).to_have_count(0)
