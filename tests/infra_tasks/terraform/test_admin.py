"""The terraform admin: who may plan, approve and destroy; typed destroy confirmation; the
directory check; the run page. Requests are queued on the real SQS endpoint."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from infra_tasks.terraform.models import RunKind, RunState, TerraformRun, TerraformWorkspace
from infra_tasks.terraform.selectors import (
    terraform_run_list_latest,
    workspace_configuration_digest,
)
from infra_tasks.terraform.services.runs import RunError, run_approve, run_cancel, run_request
from tests.support.broker import publishing_to
from tests.support.html_checks import html_problems
from tests.support.races import get_with_commit_after_query, pages_made_as_the_job_ends
from tests.support.servers import AwsEndpoint, new_queue_prefix
from tests.workers.test_monitoring import sqs_queues_named
from workers.enqueue import Requester
from workers.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

MakeWorkspace = Callable[..., TerraformWorkspace]
CHANGELIST = "admin:terraform_terraformworkspace_changelist"


@pytest.fixture
def unread_queues(sqs_queues: AwsEndpoint) -> Iterator[None]:
    """Jobs a test queues go to queues of their own that no worker reads: the session's
    worker would otherwise run them while the test's database is emptied (a deadlock at
    teardown). What the admin records and says is what these tests look at."""
    prefix = new_queue_prefix()
    sqs_queues_named(prefix)
    with publishing_to(prefix):
        yield


def staff(name: str, *perms: str) -> User:
    user = get_user_model().objects.create_user(name, password="pw-for-tests", is_staff=True)
    codenames = ["view_terraformworkspace", "view_terraformrun", *perms]
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def planned_run(workspace: TerraformWorkspace, requester: User) -> TerraformRun:
    """A run whose plan is waiting for approval (the plan itself is not what is tested)."""
    return TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.PLANNED,
        requester_kind="user",
        requester_label=requester.get_username(),
        requested_by=requester,
        plan_task_id="plan-task",
        plan_summary={"add": 1, "change": 0, "destroy": 0},
        message="Plan: 1 to add, 0 to change, 0 to destroy. Waiting for approval.",
    )


def applying_run(
    workspace: TerraformWorkspace,
    *,
    heartbeat_at: datetime,
    worker: str = "",
    plan_task_id: str = "plan-task",
) -> TerraformRun:
    """A run whose apply is under way on `worker`, last heard from at `heartbeat_at`."""
    return TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.APPLYING,
        requester_kind="user",
        requester_label="alice",
        plan_task_id=plan_task_id,
        worker=worker,
        heartbeat_at=heartbeat_at,
    )


def test_plan_action_needs_the_plan_permission(
    unread_queues: None, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    data = {"action": "plan", "_selected_action": [workspace.pk]}

    viewer = staff("viewer")
    client_for(viewer).post(reverse(CHANGELIST), data)
    assert not TerraformRun.objects.exists()

    planner = staff("planner", "plan_terraformworkspace")
    response = client_for(planner).post(reverse(CHANGELIST), data, follow=True)
    run = TerraformRun.objects.get()
    assert (run.kind, run.requested_by) == (RunKind.APPLY, planner)
    assert run.state in (RunState.QUEUED, RunState.PLANNING, RunState.PLANNED)
    assert "plan and apply requested" in response.content.decode()
    assert LogEntry.objects.filter(user=planner, object_id=str(run.pk)).exists()


def test_destroy_needs_its_permission_and_the_typed_workspace_name(
    unread_queues: None, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    destroy_url = reverse("admin:terraform_workspace_destroy", args=[workspace.pk])

    planner = client_for(staff("planner", "plan_terraformworkspace"))
    assert planner.post(destroy_url, {"confirm_name": workspace.name}).status_code == 403
    assert not TerraformRun.objects.exists()

    destroyer = client_for(staff("destroyer", "destroy_terraformworkspace"))
    # The list action leads to the same confirmation page as the workspace page's link.
    chosen = destroyer.post(
        reverse(CHANGELIST), {"action": "plan_destroy", "_selected_action": [workspace.pk]}
    )
    assert chosen.status_code == 302 and chosen["Location"] == destroy_url
    form = destroyer.get(destroy_url)
    assert form.status_code == 200 and b"Type the workspace name to confirm" in form.content
    assert not TerraformRun.objects.exists()

    wrong = destroyer.post(destroy_url, {"confirm_name": "production"})
    assert wrong.status_code == 200 and b"not the workspace" in wrong.content
    assert b'value="production"' in wrong.content, "what was typed stays in the field"
    assert not TerraformRun.objects.exists()

    done = destroyer.post(destroy_url, {"confirm_name": workspace.name})
    run = TerraformRun.objects.get()
    assert run.kind == RunKind.DESTROY
    assert done.status_code == 302
    assert done["Location"] == reverse("admin:terraform_terraformrun_change", args=[run.pk])


def test_the_destroy_confirmation_names_the_plan_it_would_wait_behind(
    unread_queues: None, make_workspace: MakeWorkspace
) -> None:
    """The page read "everything workspace demo manages (demo)" and said nothing of the
    plan left waiting for approval, behind which the destroy would wait unseen."""
    workspace = make_workspace()
    destroyer = staff("destroyer", "destroy_terraformworkspace")
    destroy_url = reverse("admin:terraform_workspace_destroy", args=[workspace.pk])

    free = client_for(destroyer).get(destroy_url).content.decode()
    assert f"everything</strong> the workspace\n  <strong>{workspace.name}</strong> manages." in (
        free
    )
    assert f"({workspace.directory})" not in free, "the directory is the name: said once"
    assert 'id="destroy-behind"' not in free

    planned = planned_run(workspace, destroyer)
    held = client_for(destroyer).get(destroy_url).content.decode()
    run_url = reverse("admin:terraform_terraformrun_change", args=[planned.pk])
    assert f'<a href="{run_url}">{planned}</a>' in held
    assert "(planned: needs approval): the destroy plan waits until that run" in held
    assert "is approved and applied, or discarded" in held


@pytest.mark.parametrize(
    "permission",
    [
        "plan_terraformworkspace",
        "apply_terraformworkspace",
        "destroy_terraformworkspace",
        "force_unlock_terraformworkspace",
    ],
)
def test_a_named_permission_without_the_view_one_acts_on_no_workspace_or_run_by_its_url(
    make_workspace: MakeWorkspace, unread_queues: None, permission: str
) -> None:
    """The buttons' URLs ask what the list's actions ask (whose list needs the view
    permission): a staff member holding only the permission to act, who may look at no
    workspace or run, is refused every one of them, shown nothing and starts nothing."""
    workspace = make_workspace()
    run = planned_run(workspace, staff("alice"))
    user = get_user_model().objects.create_user("blind", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename=permission))
    client = client_for(user)
    urls = [
        reverse("admin:terraform_workspace_plan", args=[workspace.pk]),
        reverse("admin:terraform_workspace_drift", args=[workspace.pk]),
        reverse("admin:terraform_workspace_destroy", args=[workspace.pk]),
        *(
            reverse("admin:terraform_run_do", args=[run.pk, what])
            for what in ("approve", "discard", "cancel", "force_unlock")
        ),
    ]

    for url in urls:
        assert client.post(url, {"confirm_name": workspace.name}).status_code == 403, url
    destroy_page = client.get(reverse("admin:terraform_workspace_destroy", args=[workspace.pk]))
    assert destroy_page.status_code == 403

    assert list(TerraformRun.objects.values_list("pk", "state")) == [(run.pk, RunState.PLANNED)]
    assert not Job.objects.exists()


def test_approval_needs_the_apply_permission_and_destroy_approval_the_destroy_one(
    make_workspace: MakeWorkspace, unread_queues: None
) -> None:
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace")
    run = planned_run(workspace, alice)
    approve_url = reverse("admin:terraform_run_do", args=[run.pk, "approve"])

    assert (
        client_for(staff("planner", "plan_terraformworkspace")).post(approve_url).status_code == 403
    )
    run.refresh_from_db()
    assert run.state == RunState.PLANNED

    approver = staff("approver", "apply_terraformworkspace")
    assert client_for(approver).get(approve_url).status_code == 405, "changes need a POST"
    TerraformRun.objects.filter(pk=run.pk).update(kind=RunKind.DESTROY)
    client_for(approver).post(approve_url)
    run.refresh_from_db()
    assert run.state == RunState.PLANNED, "a destroy also needs the destroy permission"

    TerraformRun.objects.filter(pk=run.pk).update(kind=RunKind.APPLY)
    client_for(approver).post(approve_url)
    run.refresh_from_db()
    assert (run.state, run.approved_by) == (RunState.APPLY_QUEUED, approver)
    assert run.apply_task_id
    # The run (and its apply job's page, which shows this) no longer waits for approval.
    assert (
        run.message == "Plan: 1 to add, 0 to change, 0 to destroy. Approved by approver; applying."
    )


def test_four_eyes_refuses_approval_by_the_requester(make_workspace: MakeWorkspace) -> None:
    workspace = make_workspace(require_distinct_approver=True)
    alice = staff("alice", "plan_terraformworkspace", "apply_terraformworkspace")
    run = planned_run(workspace, alice)

    with pytest.raises(RunError, match="someone other than the requester"):
        run_approve(run=run, user=alice)
    run.refresh_from_db()
    assert (run.state, run.approved_by, run.apply_task_id) == (RunState.PLANNED, None, "")

    response = client_for(alice).post(
        reverse("admin:terraform_run_do", args=[run.pk, "approve"]), follow=True
    )
    assert "someone other than the requester" in response.content.decode()

    # Her own run's page offered "Approve and apply this plan", which could only be refused:
    # it says who approves instead; another approver gets the button.
    page = reverse("admin:terraform_terraformrun_change", args=[run.pk])
    html = client_for(alice).get(page).content.decode()
    assert 'id="run-approve"' not in html
    assert "requires approval by someone other than the requester" in html
    other = client_for(staff("bob", "apply_terraformworkspace")).get(page).content.decode()
    assert 'id="run-approve"' in other and 'id="run-four-eyes"' not in other


def test_a_directory_outside_the_root_is_refused(make_workspace: MakeWorkspace) -> None:
    admin = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    response = client_for(admin).post(
        reverse("admin:terraform_terraformworkspace_add"),
        {
            "name": "escape",
            "directory": "../../etc",
            "variables": "{}",
            "run_time_limit_seconds": "",
            "secrets-TOTAL_FORMS": "0",
            "secrets-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200 and b"is not inside TERRAFORM_ROOT" in response.content
    assert not TerraformWorkspace.objects.filter(name="escape").exists()

    # A row changed behind the admin's back is refused at request time too.
    workspace = make_workspace()
    TerraformWorkspace.objects.filter(pk=workspace.pk).update(directory="../outside")
    workspace.refresh_from_db()
    with pytest.raises(RunError, match="not inside TERRAFORM_ROOT"):
        run_request(workspace=workspace, kind=RunKind.APPLY, requester=Requester.cli("test"))
    assert not TerraformRun.objects.exists()


def test_run_page_shows_plan_summary_people_and_the_live_log(
    make_workspace: MakeWorkspace,
) -> None:
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace", "apply_terraformworkspace")
    alice.user_permissions.add(Permission.objects.get(codename="view_taskresult"))
    run = planned_run(workspace, alice)

    page = client_for(alice).get(reverse("admin:terraform_terraformrun_change", args=[run.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert "1 to add, 0 to change, 0 to destroy" in html
    assert "User: alice" in html
    assert reverse("workers:job-log", args=["plan-task"]) in html
    assert "Approve and apply this plan" in html and "Discard the plan" in html

    listing = client_for(alice).get(reverse(CHANGELIST)).content.decode()
    assert "Planned: needs approval" in listing

    assert terraform_run_list_latest(limit=5) == [run]


def test_cancelling_a_run_whose_worker_went_silent_frees_the_workspace_at_once(
    make_workspace: MakeWorkspace,
) -> None:
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace")
    run = applying_run(
        workspace, worker="gone@host", heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    run = run_cancel(run=run, user=alice)
    assert run.state == RunState.LOST
    assert run.message.startswith("Applying on gone@host stopped: worker lost — check the state.")
    assert run.cancel_requested_by == alice

    # A live worker (recent heartbeat) is asked instead, and the run keeps going until it stops.
    live = applying_run(workspace, plan_task_id="plan-task-2", heartbeat_at=timezone.now())
    live = run_cancel(run=live, user=alice)
    assert live.state == RunState.APPLYING and live.cancel_requested_at is not None


def test_a_run_being_cancelled_says_so_and_offers_no_second_cancel(
    make_workspace: MakeWorkspace,
) -> None:
    """Its page kept "Cancel the run", whose second press only said "already being
    cancelled"."""
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace")
    run = applying_run(workspace, worker="busy@host", heartbeat_at=timezone.now())
    page = reverse("admin:terraform_terraformrun_change", args=[run.pk])
    assert 'id="run-cancel"' in client_for(alice).get(page).content.decode()

    run_cancel(run=run, user=alice)
    html = client_for(alice).get(page).content.decode()
    assert 'id="run-cancel"' not in html
    assert "Cancel requested by alice: the worker is stopping terraform." in html

    # Should that worker go silent, cancelling again ends the run at once: offered again.
    TerraformRun.objects.filter(pk=run.pk).update(
        heartbeat_at=timezone.now() - timedelta(minutes=10)
    )
    assert 'id="run-cancel"' in client_for(alice).get(page).content.decode()


def test_a_plan_for_another_configuration_says_so_and_cannot_be_approved(
    make_workspace: MakeWorkspace,
) -> None:
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace", "apply_terraformworkspace")
    run = planned_run(workspace, staff("bob"))
    TerraformRun.objects.filter(pk=run.pk).update(
        config_sha256="0" * 64, plan_inputs={"variables": {}, "secrets": {}}
    )
    now = workspace_configuration_digest(workspace=workspace)
    notice = (
        f"This plan is for configuration 000000000000; the workspace now has {now[:12]}. "
        "Approving it needs a fresh plan"
    )

    page = client_for(alice).get(reverse("admin:terraform_terraformrun_change", args=[run.pk]))
    html = " ".join(page.content.decode().split())
    assert notice in html
    assert "Approve and apply this plan" not in html and "Discard the plan" in html

    response = client_for(alice).post(
        reverse("admin:terraform_run_do", args=[run.pk, "approve"]), follow=True
    )
    assert notice in " ".join(response.content.decode().split())
    run.refresh_from_db()
    assert (run.state, run.apply_task_id) == (RunState.PLANNED, "")


def lost_run(workspace: TerraformWorkspace) -> TerraformRun:
    run = TerraformRun.objects.create(
        workspace=workspace,
        kind=RunKind.APPLY,
        state=RunState.LOST,
        message="Applying on gone@host stopped: worker lost — check the state.",
        requester_kind="user",
        requester_label="alice",
        plan_task_id="plan-task",
        apply_task_id="apply-task",
        state_key=f"state/{workspace.name}/terraform.tfstate",
        state_lock={
            "ID": "5d2c9f1e-lock",
            "Operation": "OperationTypeApply",
            "Who": "opsqueue@worker-1",
            "Created": "2026-01-01T00:00:00Z",
        },
    )
    TerraformRun.objects.filter(pk=run.pk).update(
        state_lock_checked_at=timezone.now(), finished_at=timezone.now()
    )
    run.refresh_from_db()
    return run


def test_a_lost_run_shows_the_lock_it_left_and_only_force_unlock_holders_release_it(
    make_workspace: MakeWorkspace, unread_queues: None
) -> None:
    run = lost_run(make_workspace())
    page_url = reverse("admin:terraform_terraformrun_change", args=[run.pk])
    unlock_url = reverse("admin:terraform_run_do", args=[run.pk, "force_unlock"])

    viewer = client_for(staff("viewer", "plan_terraformworkspace", "apply_terraformworkspace"))
    html = viewer.get(page_url).content.decode()
    assert "Worker lost — check the state" in html
    assert "5d2c9f1e-lock" in html and "terraform force-unlock -force 5d2c9f1e-lock" in html
    assert "Force-unlock the state" not in html
    assert viewer.post(unlock_url).status_code == 403
    run.refresh_from_db()
    assert run.unlock_task_id == ""

    unlocker = staff("unlocker", "force_unlock_terraformworkspace")
    html = client_for(unlocker).get(page_url).content.decode()
    assert "Force-unlock the state" in html
    response = client_for(unlocker).post(unlock_url, follow=True)
    assert f"Run {run}: force-unlock of its state lock queued" in response.content.decode()
    run.refresh_from_db()
    job = Job.objects.get(task_id=run.unlock_task_id)
    assert job.task_name == "infra_tasks.terraform.tasks.run_state_unlock_execute"
    assert (job.queue, job.requested_by) == ("infra", unlocker)
    assert LogEntry.objects.filter(user=unlocker, object_id=str(run.pk)).exists()

    # While the release runs the page says so and refreshes, with no second button.
    html = client_for(unlocker).get(page_url).content.decode()
    assert 'id="state-unlocking"' in html and 'http-equiv="refresh"' in html
    assert 'id="run-force-unlock"' not in html
    root = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    job_page = client_for(root).get(
        reverse("workers:job-detail", args=[run.unlock_task_id]), follow=True
    )
    assert f"Run #{run.pk} of {run.workspace} (plan and apply), its state unlock" in (
        job_page.content.decode()
    ), "the unlock job's page names its run"

    again = client_for(unlocker).post(unlock_url, follow=True)
    assert "already being released" in again.content.decode()
    assert Job.objects.filter(task_name=job.task_name).count() == 1


def test_a_workspace_keeps_its_name_once_created(make_workspace: MakeWorkspace) -> None:
    workspace = make_workspace()
    admin = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    page = client_for(admin).get(
        reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    )
    assert 'name="name"' not in page.content.decode(), "the name keys its state: read-only"
    add = client_for(admin).get(reverse("admin:terraform_terraformworkspace_add"))
    assert 'name="name"' in add.content.decode()


def test_a_workspace_with_runs_offers_no_delete_that_could_only_be_refused(
    make_workspace: MakeWorkspace,
) -> None:
    """Its Delete button led even a superuser to "Cannot delete terraform workspace": its runs
    keep it, and nobody may delete a run."""
    workspace = make_workspace()
    client = client_for(get_user_model().objects.create_superuser("root", password="pw-x"))
    page = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    delete = reverse("admin:terraform_terraformworkspace_delete", args=[workspace.pk])
    assert f'href="{delete}"' in client.get(page).content.decode(), "no runs yet: deletable"

    planned_run(workspace, get_user_model().objects.get(username="root"))
    assert f'href="{delete}"' not in client.get(page).content.decode()
    assert client.get(delete).status_code == 403


def test_bulk_delete_leaves_out_workspaces_their_runs_keep_and_deletes_the_rest(
    make_workspace: MakeWorkspace,
) -> None:
    """Deleting selected workspaces led to "Cannot delete terraform workspace" as soon as one
    had runs: now that one is named and left, and the rest are deleted once confirmed."""
    root = get_user_model().objects.create_superuser("root", password="pw-x")
    client = client_for(root)
    kept, spare = make_workspace(), make_workspace()
    planned_run(kept, root)
    listing = reverse("admin:terraform_terraformworkspace_changelist")
    selected = {"action": "delete_selected", "_selected_action": [kept.pk, spare.pk]}

    confirm = client.post(listing, selected)
    html = confirm.content.decode()
    assert confirm.status_code == 200 and "Cannot delete" not in html
    assert f"Not deleted, kept by their runs: {kept.name}." in html and spare.name in html

    done = client.post(listing, {**selected, "post": "yes"}, follow=True)
    assert done.status_code == 200
    assert list(TerraformWorkspace.objects.values_list("pk", flat=True)) == [kept.pk]

    only_kept = client.post(listing, {**selected, "_selected_action": [kept.pk]}, follow=True)
    assert f"Not deleted, kept by their runs: {kept.name}." in only_kept.content.decode()
    assert TerraformWorkspace.objects.filter(pk=kept.pk).exists()


def test_a_workspace_never_checked_for_drift_says_so_instead_of_no(
    make_workspace: MakeWorkspace,
) -> None:
    workspace = make_workspace()
    client = client_for(get_user_model().objects.create_superuser("root", password="pw-x"))
    page = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    listing = reverse("admin:terraform_terraformworkspace_changelist")

    def drift_cell(html: str) -> str:
        cell = re.search(r'class="[^"]*field-drift[^"]*"[^>]*>(.*?)</(?:td|div)>', html, re.S)
        assert cell is not None
        return re.sub(r"<[^>]+>", "", cell[1]).strip()

    assert "not checked yet" in drift_cell(client.get(listing).content.decode())
    assert "not checked yet" in client.get(page).content.decode()

    TerraformWorkspace.objects.filter(pk=workspace.pk).update(drift_checked_at=timezone.now())
    assert drift_cell(client.get(listing).content.decode()) == "no"
    TerraformWorkspace.objects.filter(pk=workspace.pk).update(drifted=True)
    assert drift_cell(client.get(listing).content.decode()) == "yes: drift found"

    # Destroyed on purpose (its destroy applied): not checked, and the button says why.
    TerraformWorkspace.objects.filter(pk=workspace.pk).update(
        drifted=False, destroyed_at=timezone.now()
    )
    assert drift_cell(client.get(listing).content.decode()) == "not checked: destroyed on purpose"
    assert 'id="workspace-drift"' not in client.get(page).content.decode()
    # A page loaded before the destroy still has the button: its click says why not.
    clicked = client.post(
        reverse("admin:terraform_workspace_drift", args=[workspace.pk]), follow=True
    )
    assert "was destroyed on purpose" in clicked.content.decode()
    assert not workspace.runs.exists()


def test_the_drift_mail_chooser_says_who_it_chooses(make_workspace: MakeWorkspace) -> None:
    """The two-box chooser was titled with the bare field name: "Available notify"."""
    workspace = make_workspace()
    admin = get_user_model().objects.create_superuser("root", password="pw-for-tests")
    html = (
        client_for(admin)
        .get(reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk]))
        .content.decode()
    )
    assert '<label for="id_notify">Drift e-mails to:</label>' in html
    assert 'data-field-name="staff to e-mail"' in html
    assert 'data-field-name="notify"' not in html


def test_a_viewer_reads_who_gets_drift_mail_not_a_blank_notify_row(
    make_workspace: MakeWorkspace,
) -> None:
    """Read-only, the chooser was a row "Notify:" with nothing after it."""
    workspace = make_workspace()
    page = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    viewer = client_for(staff("viewer"))

    html = viewer.get(page).content.decode()
    assert "Notify:" not in html
    assert "<label>Drift e-mails to:</label>" in html
    assert "every active staff member (no one chosen)" in html

    workspace.notify.add(staff("zoe"), staff("adam"))
    assert "adam, zoe" in viewer.get(page).content.decode()


def test_run_page_buttons_are_forms_of_their_own_outside_the_change_form(
    make_workspace: MakeWorkspace,
) -> None:
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace", "apply_terraformworkspace")
    run = planned_run(workspace, alice)

    html = client_for(alice).get(reverse("admin:terraform_terraformrun_change", args=[run.pk]))
    page = html.content.decode()

    # A form inside the change form is dropped by browsers: its button posts the outer one.
    assert html_problems(page) == []
    approve = reverse("admin:terraform_run_do", args=[run.pk, "approve"])
    assert page.index(f'action="{approve}"') < page.index('id="terraformrun_form"')


def test_a_planner_who_may_not_see_runs_is_brought_back_to_the_workspace_not_to_a_403(
    unread_queues: None, make_workspace: MakeWorkspace
) -> None:
    """Planning needs the workspace's plan permission, a run's page the runs' view
    permission: one does not bring the other."""
    workspace = make_workspace()
    planner = get_user_model().objects.create_user("p", password="pw-for-tests", is_staff=True)
    planner.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_terraformworkspace", "plan_terraformworkspace", "view_taskresult"]
        )
    )
    client = client_for(planner)
    workspace_url = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])
    run_pages = reverse("admin:terraform_terraformrun_changelist")

    response = client.post(
        reverse("admin:terraform_workspace_plan", args=[workspace.pk]), follow=True
    )
    run = TerraformRun.objects.get()
    assert response.redirect_chain == [(workspace_url, 302)]
    page = response.content.decode()
    assert f"requested as run #{run.pk}" in page  # said, not linked
    assert run_pages not in page  # no link on the page leads to a run's 403
    assert client.get(workspace_url).content.decode().count(run_pages) == 0
    assert html_problems(page) == []


def test_workspace_page_plan_button_queues_a_run_and_opens_the_run(
    unread_queues: None, make_workspace: MakeWorkspace
) -> None:
    workspace = make_workspace()
    plan_url = reverse("admin:terraform_workspace_plan", args=[workspace.pk])
    viewer = client_for(staff("viewer"))
    page = viewer.get(reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk]))
    assert plan_url not in page.content.decode(), "no Plan button without the permission"
    assert viewer.post(plan_url).status_code == 403
    assert not TerraformRun.objects.exists()

    planner = client_for(staff("planner", "plan_terraformworkspace", "change_terraformworkspace"))
    page = planner.get(reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk]))
    assert (
        f'action="{plan_url}"' in page.content.decode()
        and html_problems(page.content.decode()) == []
    )
    assert planner.get(plan_url).status_code == 405, "queueing needs a POST"

    response = planner.post(plan_url, follow=True)
    run = TerraformRun.objects.get()
    run_url = reverse("admin:terraform_terraformrun_change", args=[run.pk])
    assert response.redirect_chain == [(run_url, 302)]
    assert f'requested as run <a href="{run_url}">#{run.pk}</a>' in response.content.decode()
    # Named as it is spelled: the admin capitalises a message's first letter, so the message
    # does not begin with the workspace's name.
    assert f"Workspace {run.workspace.name}: " in response.content.decode()


def test_run_page_shows_the_structured_plan(make_workspace: MakeWorkspace) -> None:
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace")
    run = planned_run(workspace, alice)
    run.plan_changes = {
        "resources": [
            {
                "address": "aws_db_instance.main",
                "action": "replace",
                "reason": "must be replaced",
                "attributes": [
                    {
                        "name": "engine_version",
                        "before": '"15.4"',
                        "after": '"16.1"',
                        "forces_replacement": True,
                    },
                    {
                        "name": "password",
                        "before": "(sensitive value)",
                        "after": "(sensitive value)",
                        "forces_replacement": False,
                    },
                ],
            }
        ],
        "outputs": [
            {"address": "output.endpoint", "action": "update", "before": '"a"', "after": None}
        ],
        "omitted": 0,
    }
    run.save()

    page = client_for(alice).get(reverse("admin:terraform_terraformrun_change", args=[run.pk]))
    html = page.content.decode()
    assert 'data-address="aws_db_instance.main" data-action="replace"' in html
    assert "&quot;15.4&quot;</td>" in html and "&quot;16.1&quot;</td>" in html
    assert "forces replacement" in html and "(sensitive value)" in html
    assert 'data-address="output.endpoint"' in html


def _runs_page_queries(client: Client) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(reverse("admin:terraform_terraformrun_changelist"))
    assert response.status_code == 200
    return len(queries), response.content.decode()


def _queue(workspace: TerraformWorkspace, waiting: int, requester: User) -> None:
    """One active run and `waiting` runs behind it, with a finished one among them."""
    kwargs = {
        "workspace": workspace,
        "kind": RunKind.APPLY,
        "requester_kind": "user",
        "requester_label": requester.get_username(),
        "requested_by": requester,
    }
    TerraformRun.objects.create(state=RunState.PLANNED, **kwargs)
    TerraformRun.objects.create(state=RunState.CANCELLED, **kwargs)
    for _ in range(waiting):
        TerraformRun.objects.create(state=RunState.WAITING, **kwargs)


def test_the_run_list_shows_queue_positions_in_a_number_of_queries_independent_of_its_rows() -> (
    None
):
    viewer = staff("viewer")
    client = client_for(viewer)
    first = TerraformWorkspace.objects.create(name="first", directory="first")
    second = TerraformWorkspace.objects.create(name="second", directory="second")
    _queue(first, 1, viewer)
    few, page = _runs_page_queries(client)
    assert TerraformRun.objects.count() == 3
    assert "waiting (1 ahead)" in page

    _queue(second, 6, viewer)
    TerraformRun.objects.create(
        workspace=first,
        kind=RunKind.DRIFT_CHECK,
        state=RunState.WAITING,
        requester_kind="schedule",
        requester_label="Terraform drift check",
    )
    many, page = _runs_page_queries(client)
    assert TerraformRun.objects.count() == 12
    # The cancelled run is not ahead of anyone; each workspace keeps its own queue.
    for ahead in (1, 2):
        assert f"waiting ({ahead} ahead)" in page
    for ahead in range(1, 7):
        assert page.count(f"waiting ({ahead} ahead)") == (2 if ahead in (1, 2) else 1)
    assert "waiting (7 ahead)" not in page
    assert many == few
    # Who asked, in the words every page uses (not the bare stored label).
    assert ">Requested by</a>" in page and "Requester label" not in page
    assert ">Schedule: Terraform drift check</td>" in page


def test_an_apply_taken_over_from_a_process_that_died_is_marked_lost_not_run_again(
    make_workspace: MakeWorkspace,
) -> None:
    """Its pool process was killed mid-apply and its worker handed the message straight
    back; the run's heartbeat is still fresh. Terraform may have stopped half-way: the
    run is lost now (plan again), never applied a second time, and the job fails."""
    from infra_tasks.terraform.services.steps import run_claim

    run = applying_run(make_workspace(), worker="main@host", heartbeat_at=timezone.now())

    def claim(*, taken_over: bool) -> TerraformRun | None:
        return run_claim(
            run.pk,
            queued=RunState.APPLY_QUEUED,
            working=RunState.APPLYING,
            worker="main@host",
            taken_over=taken_over,
        )

    assert claim(taken_over=False) is None  # a repeated message: left as it is
    run.refresh_from_db()
    assert run.state == RunState.APPLYING

    assert claim(taken_over=True) is None
    run.refresh_from_db()
    assert run.state == RunState.LOST
    assert "worker lost" in run.message


def test_a_destroy_plan_offers_approval_only_to_who_may_approve_a_destroy(
    make_workspace: MakeWorkspace,
) -> None:
    run = planned_run(make_workspace(), staff("bob"))
    TerraformRun.objects.filter(pk=run.pk).update(kind=RunKind.DESTROY)
    page = reverse("admin:terraform_terraformrun_change", args=[run.pk])

    apply_only = client_for(staff("approver", "apply_terraformworkspace"))
    assert 'id="run-approve"' not in apply_only.get(page).content.decode()
    both = client_for(staff("both", "apply_terraformworkspace", "destroy_terraformworkspace"))
    html = both.get(page).content.decode()
    # The button says what approving does: it destroys, it does not apply a plan.
    assert ">Approve and destroy</button>" in html and "Approve and apply" not in html


def test_editing_a_workspace_needs_the_apply_permission_besides_the_change_one(
    make_workspace: MakeWorkspace,
) -> None:
    """Its directory, variables, secrets and four-eyes rule decide what an apply does."""
    workspace = make_workspace(require_distinct_approver=True)
    page = reverse("admin:terraform_terraformworkspace_change", args=[workspace.pk])

    editor = client_for(staff("editor", "change_terraformworkspace", "plan_terraformworkspace"))
    html = editor.get(page).content.decode()
    assert 'name="_save"' not in html, "the page is read-only without the apply permission"
    refused = editor.post(page, {"directory": "elsewhere", "require_distinct_approver": ""})
    assert refused.status_code == 403
    workspace.refresh_from_db()
    assert (workspace.directory, workspace.require_distinct_approver) == (workspace.name, True)
    assert editor.get(reverse("admin:terraform_terraformworkspace_add")).status_code == 403

    owner = client_for(staff("owner", "change_terraformworkspace", "apply_terraformworkspace"))
    assert 'name="_save"' in owner.get(page).content.decode()


def test_a_run_page_shows_its_state_in_the_form_to_who_may_not_open_its_job(
    make_workspace: MakeWorkspace,
) -> None:
    """The live box (state, message, progress) is for who may open the job; a person who
    may only look at runs reads the same in the form, and no job box that would refuse."""
    from tests.support.jobs import job_record

    run = planned_run(make_workspace(), staff("bob"))
    job_record("plan-task", "infra_tasks.terraform.tasks.run_plan_execute", status="SUCCESS")
    page = reverse("admin:terraform_terraformrun_change", args=[run.pk])

    runs_only = client_for(staff("reader")).get(page).content.decode()
    assert 'field-state"' in runs_only and "job-live-hidden" in runs_only
    assert "/ops/jobs/plan-task/" not in runs_only, "no link to a job page that would refuse"
    assert "plan-task" in runs_only  # the job is still named

    with_jobs = staff("operator")
    with_jobs.user_permissions.add(Permission.objects.get(codename="view_taskresult"))
    both = client_for(with_jobs).get(page).content.decode()
    assert 'field-state"' not in both and "/ops/jobs/plan-task/log/" in both
    assert 'href="/ops/jobs/plan-task/"' in both


def test_discarding_cancelling_and_a_plan_that_waits_are_in_the_run_history_with_who(
    unread_queues: None, make_workspace: MakeWorkspace
) -> None:
    """Each changes a run for a person; none queues a job then, whose entry would say who.
    The run's history said nothing of them."""
    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace")
    client = client_for(alice)
    planned = planned_run(workspace, alice)

    def history(run: TerraformRun) -> list[str]:
        entries = LogEntry.objects.filter(object_id=str(run.pk), content_type__model="terraformrun")
        return [f"{e.user.get_username()}: {e.change_message}" for e in entries.order_by("pk")]

    # The planned run holds the workspace: a new plan waits its turn.
    client.post(reverse(CHANGELIST), {"action": "plan", "_selected_action": [workspace.pk]})
    waiting = TerraformRun.objects.exclude(pk=planned.pk).get()
    assert waiting.state == RunState.WAITING
    assert history(waiting) == ["alice: Requested (plan and apply); waits its turn."]

    run_button = "admin:terraform_run_do"
    client.post(reverse(run_button, args=[planned.pk, "discard"]))
    assert TerraformRun.objects.get(pk=planned.pk).state == RunState.DISCARDED
    assert history(planned) == ["alice: Discarded the plan."]
    # Its page names who stopped it for a discard too (it read "Cancel requested by").
    page = client.get(reverse("admin:terraform_terraformrun_change", args=[planned.pk]))
    assert "Cancelled or discarded by" in page.content.decode()
    assert "Cancel requested by" not in page.content.decode()

    client.post(reverse(run_button, args=[waiting.pk, "cancel"]))
    assert TerraformRun.objects.get(pk=waiting.pk).state == RunState.CANCELLED
    assert history(waiting)[-1] == "alice: Asked to cancel the run."


def test_a_waiting_runs_page_names_and_links_the_run_it_waits_behind() -> None:
    """ "1 run(s) ahead" left a person to find which run holds the workspace; the page names
    the first unfinished one, with its state (a plan to approve or discard) and its link."""
    viewer = staff("viewer")
    workspace = TerraformWorkspace.objects.create(name="queued", directory="queued")
    _queue(workspace, 2, viewer)
    blocking, _cancelled, _next, last = TerraformRun.objects.order_by("id")

    page = (
        client_for(viewer)
        .get(reverse("admin:terraform_terraformrun_change", args=[last.pk]))
        .content.decode()
    )

    blocking_url = reverse("admin:terraform_terraformrun_change", args=[blocking.pk])
    assert (
        f'Waiting for the workspace: 2 runs ahead, first <a href="{blocking_url}" '
        f'id="run-first-ahead">{blocking}</a> (planned: needs approval).'
    ) in page
    assert html_problems(page) == []


def test_a_run_page_made_while_its_plan_ends_never_shows_a_finished_plan_job_beside_cancel(
    make_workspace: MakeWorkspace,
) -> None:
    """The page reloads when its job ends while watched, not when the job had already ended
    as it was made: the run it shows must then be the one the job left. The plan ends (the
    run planned, then its job's record SUCCESS, each committed by another connection as the
    worker commits them) after each of the page's queries in turn."""
    from django_celery_results.models import TaskResult

    from infra_tasks.terraform.jobs import RUN_PLAN_EXECUTE

    workspace = make_workspace()
    alice = staff("alice", "plan_terraformworkspace", "apply_terraformworkspace")
    alice.user_permissions.add(Permission.objects.get(codename="view_taskresult"))
    client = client_for(alice)

    def planning(task_id: str) -> TerraformRun:
        TaskResult.objects.create(
            task_id=task_id,
            task_name=RUN_PLAN_EXECUTE.name,
            status="STARTED",
            date_started=timezone.now(),
        )
        return TerraformRun.objects.create(
            workspace=workspace,
            kind=RunKind.APPLY,
            state=RunState.PLANNING,
            requester_kind="user",
            requester_label="alice",
            requested_by=alice,
            plan_task_id=task_id,
        )

    def page_with_the_plan_ending_after_query(at: int) -> tuple[str, int]:
        run = planning(f"plan-{at}")
        plan_ends = (
            (
                "UPDATE terraform_terraformrun SET state = %s, plan_summary = %s, message = %s "
                "WHERE id = %s",
                [RunState.PLANNED, '{"add": 1, "change": 0, "destroy": 0}', "Plan.", run.pk],
            ),
            (
                "UPDATE django_celery_results_taskresult SET status = 'SUCCESS', "
                "date_done = now() WHERE task_id = %s",
                [run.plan_task_id],
            ),
        )
        url = reverse("admin:terraform_terraformrun_change", args=[run.pk])
        page, queries = get_with_commit_after_query(client, url, at=at, commit=plan_ends)
        run.delete()  # one active run per workspace
        assert page.status_code == 200
        return page.content.decode(), queries

    for at, html in pages_made_as_the_job_ends(
        page_with_the_plan_ending_after_query, more_queries_than=5
    ):
        assert 'id="run-approve"' in html and 'id="run-cancel"' not in html, at
