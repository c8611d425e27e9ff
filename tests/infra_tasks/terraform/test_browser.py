"""Terraform in a real headless Chromium, clicking what is on screen: Plan on the workspace
page, the structured plan and Approve on the run page, the apply live, Cancel on the run
page, plan again, and a destroy confirmed by typing the workspace's name."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from django_celery_results.models import TaskResult

from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from tests.support.browser import Tour

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

MakeWorkspace = Callable[..., TerraformWorkspace]


def open_workspace(tour: Tour, workspace: TerraformWorkspace) -> None:
    page = tour.page
    page.locator("#site-name a").click()  # the header leads home from any page
    page.locator("#content-main").get_by_role("link", name="Workspaces").click()
    page.locator("#result_list").get_by_role("link", name=workspace.name, exact=True).click()


def approve_when_planned(tour: Tour) -> TerraformRun:
    """Wait on the run page for its plan (the page reloads when the plan job ends), then
    press Approve there."""
    from playwright.sync_api import expect

    page = tour.page
    expect(page.locator("#run-approve")).to_be_visible(timeout=90_000)
    tour.screenshot("terraform-run-planned")
    found = re.search(r"/terraformrun/(\d+)/", page.url)
    assert found, page.url
    run = TerraformRun.objects.get(pk=int(found[1]))
    assert run.state == RunState.PLANNED, run.message
    with tour.submitted(302):
        page.click("#run-approve")
    run.refresh_from_db()
    assert run.state in (RunState.APPLY_QUEUED, RunState.APPLYING, RunState.APPLIED)
    expect(page.locator("ul.messagelist a")).to_have_attribute(
        "href", f"/ops/jobs/{run.apply_task_id}/"
    )
    return run


def test_plan_approve_cancel_plan_again_and_destroy_from_the_workspace_and_run_pages(
    tour: Tour, make_workspace: MakeWorkspace
) -> None:
    from playwright.sync_api import expect

    page = tour.page
    workspace = make_workspace(variables={"sleep_seconds": 120})

    # Plan: the button on the workspace page; the message links the run, and we are on it.
    open_workspace(tour, workspace)
    with tour.submitted(302):
        page.click("#workspace-plan")
    run = TerraformRun.objects.get(workspace=workspace)
    expect(page).to_have_url(re.compile(rf"/admin/terraform/terraformrun/{run.pk}/change/$"))
    expect(page.locator("ul.messagelist")).to_contain_text("plan and apply requested as run")
    expect(page.locator("ul.messagelist a")).to_have_attribute(
        "href", f"/admin/terraform/terraformrun/{run.pk}/change/"
    )

    # The structured plan, then Approve on the run page.
    run = approve_when_planned(tour)
    plan = page.locator("#run-plan")
    expect(plan).to_contain_text("Plan: 3 to add, 0 to change, 0 to destroy")
    first = plan.locator('[data-address="terraform_data.first"]')
    expect(first).to_have_attribute("data-action", "create")
    expect(first.locator('tr[data-attribute="input"] .plan-after')).to_have_text('"hello"')
    expect(first.locator('tr[data-attribute="id"] .plan-after')).to_have_text("(known after apply)")
    expect(plan.locator('tr[data-address="output.token"] .plan-after')).to_have_text(
        "(sensitive value)"
    )

    # The apply runs live on the run page; Cancel is pressed there mid-way.
    log = page.locator("#job-log")
    expect(log).to_contain_text("slow step started", timeout=90_000)
    expect(page.locator("#job-live-status")).to_have_text("Running (STARTED)")
    expect(page.locator("#job-subject-state")).to_have_text("Applying")
    expect(page.locator("#job-progress-text")).to_contain_text("/ 3")
    tour.screenshot("terraform-run-applying")
    with tour.submitted(302):
        page.click("#run-cancel")
    expect(page.locator("ul.messagelist")).to_contain_text("cancel requested")
    # The page follows the job to its end and reloads: cancelled everywhere, not SUCCESS.
    expect(page.locator("#job-live-status")).to_have_text("Cancelled (REVOKED)", timeout=60_000)
    expect(page.locator("#job-subject-state")).to_have_text("Cancelled")
    expect(page.locator("#job-outcome")).to_contain_text("Cancelled by ops")
    tour.job_settled()
    expect(page.locator("#run-cancel")).to_have_count(0)
    run.refresh_from_db()
    assert run.state == RunState.CANCELLED
    assert TaskResult.objects.get(task_id=run.apply_task_id).status == "REVOKED"

    # The workspace form keeps what was typed when it is wrong, then takes the fix.
    page.get_by_role("link", name=f"Workspace {workspace.name}").click()
    variables = page.locator("#id_variables")
    variables.fill('{"sleep_seconds": 0')
    with tour.submitted(200):
        page.click("input[name=_continue]")
    expect(page.locator(".errorlist")).to_be_visible()
    expect(variables).to_have_value('{"sleep_seconds": 0')
    variables.fill('{"sleep_seconds": 0}')
    with tour.submitted(302):
        page.click("input[name=_continue]")

    # Plan again from the cancelled run's page (linked from the workspace page).
    page.locator("div.readonly").get_by_role("link", name=f"#{run.pk}").click()
    with tour.submitted(302):
        page.click("#run-plan-again")
    again = approve_when_planned(tour)
    assert again.pk != run.pk
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)", timeout=90_000)
    tour.job_settled()
    expect(page.locator("#job-subject-state")).to_have_text("Applied")
    expect(page.locator("#job-progress-text")).to_have_text(re.compile(r"^(\d) / \1$"))
    again.refresh_from_db()
    assert again.state == RunState.APPLIED, again.message

    # Destroy: the typed name is asked for; a wrong one is refused and kept in the field.
    open_workspace(tour, workspace)
    page.click("#workspace-destroy")
    confirm = page.locator("#id_confirm_name")
    confirm.fill("production")
    with tour.submitted(200):
        page.click("#destroy-submit")
    expect(page.locator(".errorlist")).to_contain_text("not the workspace's name")
    expect(confirm).to_have_value("production")
    assert not TerraformRun.objects.filter(kind=RunKind.DESTROY).exists()
    confirm.fill(workspace.name)
    with tour.submitted(302):
        page.click("#destroy-submit")
    destroy = approve_when_planned(tour)
    assert destroy.kind == RunKind.DESTROY
    expect(page.locator('#run-plan [data-address="terraform_data.first"]')).to_have_attribute(
        "data-action", "delete"
    )
    expect(page.locator("#job-live-status")).to_have_text("Succeeded (SUCCESS)", timeout=90_000)
    tour.job_settled()
    destroy.refresh_from_db()
    assert destroy.state == RunState.APPLIED, destroy.message

    # Once destroyed, the run page's next step builds the workspace again (it offered
    # "Plan destroy again…", which has nothing left to destroy).
    page.locator("#job-subject").click()
    expect(page.locator("#run-plan-again")).to_have_text("Plan to build it again")
    with tour.submitted(302):
        page.click("#run-plan-again")
    expect(page.locator("#run-approve")).to_be_visible(timeout=90_000)
    rebuild = TerraformRun.objects.latest("pk")
    assert (rebuild.kind, rebuild.state) == (RunKind.APPLY, RunState.PLANNED)
    expect(page.locator("#run-plan")).to_contain_text("3 to add")

    # Destroyed on purpose, it is not checked for drift until that plan is applied: the
    # workspace page says so and offers no Check for drift.
    open_workspace(tour, workspace)
    expect(page.locator(".field-drift .readonly")).to_have_text("not checked: destroyed on purpose")
    expect(page.locator("#workspace-plan")).to_be_visible()
    expect(page.locator("#workspace-drift")).to_have_count(0)
    tour.assert_pages_sound()


def test_approve_pressed_again_in_a_second_tab_names_the_run_with_its_workspace_s_own_name(
    tour: Tour, make_workspace: MakeWorkspace
) -> None:
    """The refusal began with the run's name, and the admin capitalises a message's first
    letter: "Demo #4 Plan and apply is applying", for a workspace named "demo"."""
    from playwright.sync_api import expect

    page = tour.page
    workspace = make_workspace()
    open_workspace(tour, workspace)
    with tour.submitted(302):
        page.click("#workspace-plan")
    expect(page.locator("#run-approve")).to_be_visible(timeout=90_000)
    stale = page.context.new_page()
    stale.goto(page.url)
    expect(stale.locator("#run-approve")).to_be_visible()
    run = approve_when_planned(tour)

    stale.click("#run-approve")
    refusal = stale.locator("ul.messagelist li.error")
    expect(refusal).to_contain_text(
        re.compile(rf"^Run {workspace.name} #{run.pk} Plan and apply is .*; only a planned run")
    )
    tour.assert_pages_sound()
