"""django-celery-beat's schedules in the admin: looking needs the view permission; every
switch, edit or deletion the model permission and the operate permission of the family of
each task whose runs it changes (a shared crontab's included); a run is a job like any other
(PENDING record, requester, LogEntry), a switch is written to the admin history."""

from __future__ import annotations

import io
import json

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission, User
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import (
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    SolarSchedule,
)
from django_celery_results.models import TaskResult

from tests.infra_tasks.rds.support import register
from tests.support.servers import AwsEndpoint
from workers.demo import DATABASE_OPERATORS, groups_seed
from workers.models import Job, RequesterKind

pytestmark = pytest.mark.django_db

CHANGELIST = "admin:django_celery_beat_periodictask_changelist"


def staff(username: str, *perms: str) -> tuple[User, Client]:
    user = get_user_model().objects.create_user(username, is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return user, client


def nightly_stop() -> PeriodicTask:
    register("demo-postgres")
    return PeriodicTask.objects.get(name="rds: nightly stop of demo-postgres")


@pytest.mark.parametrize("action", ["enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks"])
def test_view_only_staff_cannot_switch_or_run_a_schedule(action: str) -> None:
    schedule = nightly_stop()
    _, viewer = staff(
        "viewer", "django_celery_beat.view_periodictask", "rds.operate_manageddatabase"
    )

    viewer.post(reverse(CHANGELIST), {"action": action, "_selected_action": [schedule.pk]})

    schedule.refresh_from_db()
    assert schedule.enabled
    assert not Job.objects.exists() and not TaskResult.objects.exists()


def test_running_a_schedule_needs_the_operate_permission_of_its_family() -> None:
    schedule = nightly_stop()
    # May start diagnostic jobs, so Run is offered; not database jobs, so this one is refused.
    _, editor = staff(
        "editor",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "workers.run_diagnostic",
    )

    response = editor.post(
        reverse(CHANGELIST), {"action": "run_tasks", "_selected_action": [schedule.pk]}, follow=True
    )

    assert "you may not start the jobs of rds: nightly stop of demo-postgres" in (
        response.content.decode()
    )
    assert not Job.objects.exists()


def test_run_queues_a_job_with_its_requester_and_an_audit_entry(sqs_queues: AwsEndpoint) -> None:
    schedule = nightly_stop()
    user, operator = staff(
        "operator",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "rds.operate_manageddatabase",
    )

    response = operator.post(
        reverse(CHANGELIST), {"action": "run_tasks", "_selected_action": [schedule.pk]}, follow=True
    )

    job = Job.objects.get()
    assert job.task_name == schedule.task
    assert job.requester_kind == RequesterKind.USER and job.requested_by == user
    assert TaskResult.objects.get(task_id=job.task_id).status == "PENDING"
    entry = LogEntry.objects.get(user=user)
    assert entry.object_id == str(schedule.pk) and job.task_id in entry.change_message
    assert f"Queued 1 job: job {job.task_id}." in response.content.decode()


@pytest.mark.parametrize("may_open_jobs", [False, True], ids=["without", "with"])
def test_run_links_the_jobs_it_queued_only_for_whom_may_open_them(
    sqs_queues: AwsEndpoint, may_open_jobs: bool
) -> None:
    """The message after Run links each job to its page only where that page would open
    (the jobs' and the family's view permissions): a link to a 403 is not offered."""
    schedule = nightly_stop()
    views = ("django_celery_results.view_taskresult", "rds.view_databaseaction")
    _, operator = staff(
        "operator",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "rds.operate_manageddatabase",
        *(views if may_open_jobs else ()),
    )

    response = operator.post(
        reverse(CHANGELIST), {"action": "run_tasks", "_selected_action": [schedule.pk]}, follow=True
    )

    job_url = reverse("workers:job-detail", args=[Job.objects.get().task_id])
    assert (job_url in response.content.decode()) is may_open_jobs
    if may_open_jobs:
        assert operator.get(job_url).status_code == 302  # on to the job's admin page


def test_run_of_a_schedule_without_the_arguments_its_task_needs_queues_nothing_and_says_why(
    sqs_queues: AwsEndpoint,
) -> None:
    """A schedule saved before its arguments were checked (or written outside the admin):
    Run now used to record a job that could never be sent, failed without a reason.
    Nothing is queued now, on the schedules list and on the Jobs home alike."""
    from django_celery_beat.models import IntervalSchedule

    every_minute, _ = IntervalSchedule.objects.get_or_create(every=60, period="seconds")
    schedule = PeriodicTask.objects.create(
        name="diagnostic without its run",
        task="workers.tasks.diagnostic_run_execute",
        interval=every_minute,
    )
    admin = Client()
    admin.force_login(get_user_model().objects.create_superuser("root"))

    listed = admin.post(
        reverse(CHANGELIST), {"action": "run_tasks", "_selected_action": [schedule.pk]}, follow=True
    )
    home = admin.post(reverse("workers:recurring-run", args=[schedule.pk]), follow=True)

    said = "workers.tasks.diagnostic_run_execute does not take these arguments: " + (
        "diagnostic_run_execute() missing 1 required positional argument: &#x27;run_id&#x27;."
    )
    assert f"Nothing was run: {said}" in listed.content.decode()
    assert f"Not run: {said}" in home.content.decode()
    assert not Job.objects.exists() and not TaskResult.objects.exists()


@pytest.mark.parametrize("action", ["enable_tasks", "disable_tasks", "toggle_tasks"])
def test_a_switch_needs_the_operate_permission_of_every_selected_schedule(action: str) -> None:
    schedule = nightly_stop()
    schedule.enabled = action == "disable_tasks"
    schedule.save()
    _, editor = staff(
        "editor",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "workers.run_diagnostic",
    )

    response = editor.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [schedule.pk]}, follow=True
    )

    assert "Nothing was changed: you may not start the jobs of rds: nightly stop" in (
        response.content.decode()
    )
    schedule.refresh_from_db()
    assert schedule.enabled == (action == "disable_tasks")
    assert not LogEntry.objects.exists()


def test_a_switch_works_with_both_permissions_and_is_written_to_the_history() -> None:
    schedule = nightly_stop()
    user, editor = staff(
        "editor",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "rds.operate_manageddatabase",
    )

    editor.post(reverse(CHANGELIST), {"action": "disable_tasks", "_selected_action": [schedule.pk]})

    schedule.refresh_from_db()
    assert not schedule.enabled
    entry = LogEntry.objects.get(user=user)
    assert entry.object_id == str(schedule.pk) and "Disabled" in entry.get_change_message()


def test_a_schedule_of_a_family_the_user_may_not_start_is_read_only_and_kept() -> None:
    schedule = nightly_stop()
    _, editor = staff(
        "editor",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "django_celery_beat.delete_periodictask",
    )
    page = reverse("admin:django_celery_beat_periodictask_change", args=[schedule.pk])

    assert 'name="_save"' not in editor.get(page).content.decode()
    assert editor.post(page, {"name": "renamed"}).status_code == 403
    delete = reverse("admin:django_celery_beat_periodictask_delete", args=[schedule.pk])
    assert editor.post(delete, {"post": "yes"}).status_code == 403
    editor.post(
        reverse(CHANGELIST),
        {"action": "delete_selected", "_selected_action": [schedule.pk], "post": "yes"},
    )
    assert PeriodicTask.objects.filter(pk=schedule.pk, name=schedule.name).exists()


def test_a_read_only_schedule_page_shows_its_task_without_the_task_picker() -> None:
    schedule = nightly_stop()
    _, viewer = staff("viewer", "django_celery_beat.view_periodictask")
    page = reverse("admin:django_celery_beat_periodictask_change", args=[schedule.pk])

    html = viewer.get(page).content.decode()

    assert 'name="_save"' not in html, "read-only"
    assert "Regtask" not in html and '<div class="readonly">None</div>' not in html
    assert "infra_tasks.rds.tasks.database_scheduled_run" in html


def test_a_shared_crontab_changes_only_with_the_operate_permission_of_the_tasks_on_it() -> None:
    schedule = nightly_stop()
    crontab = schedule.crontab
    assert crontab is not None
    perms = [
        "django_celery_beat.view_crontabschedule",
        "django_celery_beat.change_crontabschedule",
        "django_celery_beat.delete_crontabschedule",
    ]
    _, editor = staff("editor", *perms)
    page = reverse("admin:django_celery_beat_crontabschedule_change", args=[crontab.pk])
    every_minute = {
        "minute": "*",
        "hour": "*",
        "day_of_month": "*",
        "month_of_year": "*",
        "day_of_week": "*",
        "timezone": "UTC",
    }

    assert editor.post(page, every_minute).status_code == 403
    delete = reverse("admin:django_celery_beat_crontabschedule_delete", args=[crontab.pk])
    assert editor.post(delete, {"post": "yes"}).status_code == 403
    editor.post(
        reverse("admin:django_celery_beat_crontabschedule_changelist"),
        {"action": "delete_selected", "_selected_action": [crontab.pk], "post": "yes"},
    )
    crontab.refresh_from_db()
    assert crontab.minute != "*" and PeriodicTask.objects.filter(pk=schedule.pk).exists()

    _, operator = staff("operator", *perms, "rds.operate_manageddatabase")
    assert operator.post(page, every_minute).status_code == 302
    crontab.refresh_from_db()
    assert crontab.minute == "*"


def test_a_schedule_can_only_name_a_task_its_editor_may_start() -> None:
    _, editor = staff(
        "editor", "django_celery_beat.view_periodictask", "django_celery_beat.add_periodictask"
    )

    response = editor.post(
        reverse("admin:django_celery_beat_periodictask_add"),
        {
            "name": "sneaky stop",
            "regtask": "infra_tasks.rds.tasks.database_scheduled_run",
            "task": "",
            "enabled": "on",
            "args": '[1, "stop"]',
            "kwargs": "{}",
            "headers": "{}",
            "priority": "",
            "expire_seconds": "",
        },
    )

    assert response.status_code == 200
    assert "You may not start infra_tasks.rds.tasks.database_scheduled_run jobs" in (
        response.content.decode()
    )
    assert not PeriodicTask.objects.filter(name="sneaky stop").exists()


def test_a_user_who_may_start_no_family_s_jobs_is_offered_no_switch_run_or_delete() -> None:
    nightly_stop()
    _, editor = staff(
        "editor",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "django_celery_beat.delete_periodictask",
    )
    page = editor.get(reverse(CHANGELIST)).content.decode()
    for action in ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks", "delete_selected"):
        assert f'value="{action}"' not in page


@pytest.mark.parametrize("header", ["task", "id", "parent_id", "opsqueue_deferred_job"])
def test_a_schedule_cannot_set_the_headers_that_decide_which_job_runs(header: str) -> None:
    """Celery lets extra headers overwrite its own, and a worker runs the task its "task"
    header names: a database operator could otherwise run a release from a database
    schedule."""
    _, editor = staff(
        "editor",
        "django_celery_beat.view_periodictask",
        "django_celery_beat.add_periodictask",
        "rds.operate_manageddatabase",
    )
    response = editor.post(
        reverse("admin:django_celery_beat_periodictask_add"),
        {
            "name": "smuggled",
            "regtask": "infra_tasks.rds.tasks.database_action_execute",
            "task": "",
            "enabled": "on",
            "args": "[2]",
            "kwargs": "{}",
            "headers": json.dumps({header: "infra_tasks.releases.tasks.release_execute"}),
            "priority": "",
            "expire_seconds": "",
        },
    )
    assert response.status_code == 200
    assert "cannot be set here: " + header in response.content.decode()
    assert not PeriodicTask.objects.filter(name="smuggled").exists()


def test_a_step_of_a_terraform_run_needs_its_own_permission_to_be_scheduled() -> None:
    """Planning permission is the family's; force-unlocking state asks for its own on the
    run's page, and a schedule is no way around it."""
    from workers.families import job_startable

    planner, _ = staff("planner", "terraform.plan_terraformworkspace")
    unlock = "infra_tasks.terraform.tasks.run_state_unlock_execute"
    assert job_startable(planner, "infra_tasks.terraform.tasks.drift_check_request_all")
    assert not job_startable(planner, unlock)
    assert not job_startable(planner, "infra_tasks.terraform.tasks.run_apply_execute")
    planner.user_permissions.add(Permission.objects.get(codename="force_unlock_terraformworkspace"))
    assert job_startable(get_user_model().objects.get(pk=planner.pk), unlock)


def test_a_read_only_schedule_page_links_to_no_schedule_page_its_reader_may_not_open() -> None:
    """A database operator sees periodic tasks, not intervals or crontabs: Django linked the
    read-only schedule to its page anyway, which answered 403. It is shown as text; who
    may open it still gets the link."""
    groups_seed(stdout=io.StringIO())
    every = IntervalSchedule.objects.create(every=7, period="minutes")
    nightly = CrontabSchedule.objects.create(minute="0", hour="3")
    # Diagnostic jobs, which the operator may not start: the page is read-only for it.
    tasks = [
        PeriodicTask.objects.create(
            name=f"diag {n}", task="workers.tasks.diagnostic_run_execute", **s
        )
        for n, s in enumerate([{"interval": every}, {"crontab": nightly}])
    ]
    operator = get_user_model().objects.create_user("op", is_staff=True)
    operator.groups.add(Group.objects.get(name=DATABASE_OPERATORS))
    client = Client()
    client.force_login(operator)
    schedule_pages = [
        reverse("admin:django_celery_beat_intervalschedule_change", args=[every.pk]),
        reverse("admin:django_celery_beat_crontabschedule_change", args=[nightly.pk]),
    ]
    shown_as = ["every 7 minutes", "0 3"]
    for task, schedule_page, shown in zip(tasks, schedule_pages, shown_as, strict=True):
        page = client.get(reverse("admin:django_celery_beat_periodictask_change", args=[task.pk]))
        html = page.content.decode()
        assert page.status_code == 200 and 'name="_save"' not in html
        assert schedule_page not in html
        assert shown in html
        assert client.get(schedule_page).status_code == 403

    _viewer, viewer_client = staff(
        "viewer", "django_celery_beat.view_periodictask", "django_celery_beat.view_intervalschedule"
    )
    html = viewer_client.get(
        reverse("admin:django_celery_beat_periodictask_change", args=[tasks[0].pk])
    ).content.decode()
    assert schedule_pages[0] in html


def test_a_solar_schedule_with_an_unknown_event_or_a_latitude_off_the_globe_is_refused() -> None:
    """Beat could not compute such a schedule; the form says why and keeps what was typed."""
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))
    add = reverse("admin:django_celery_beat_solarschedule_add")
    # The page's inline of periodic tasks on this schedule, empty.
    inline = {"periodictask_set-TOTAL_FORMS": "0", "periodictask_set-INITIAL_FORMS": "0"}
    page = client.post(add, {"event": "moonrise", "latitude": "91", "longitude": "181", **inline})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Select a valid choice. moonrise is not one of the available choices." in html
    assert "Ensure this value is less than or equal to 90." in html
    assert "Ensure this value is less than or equal to 180." in html
    assert 'value="91"' in html
    assert not SolarSchedule.objects.exists()

    page = client.post(
        add, {"event": "sunrise", "latitude": "48.85", "longitude": "2.35", **inline}
    )
    assert page.status_code == 302
    assert SolarSchedule.objects.get().schedule.event == "sunrise"
