"""The managed-database admin: registration with a schedule, and permission-checked actions
that each queue a job."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from infra_tasks.rds.models import DatabaseAction, ManagedDatabase
from tests.infra_tasks.rds.support import register
from tests.support.broker import drop_broker_connections
from tests.support.servers import AwsEndpoint
from workers.devstack import free_port
from workers.models import Job

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "admin:rds_manageddatabase_changelist"


def staff(*perms: str, username: str = "") -> Client:
    user = get_user_model().objects.create_user(username or f"staff{len(perms)}", is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )
    client = Client()
    client.force_login(user)
    return client


def test_registering_in_the_admin_creates_its_schedule_in_beat() -> None:
    client = staff(
        "rds.add_manageddatabase", "rds.view_manageddatabase", "rds.operate_manageddatabase"
    )

    response = client.post(
        reverse("admin:rds_manageddatabase_add"),
        {
            "name": "reports",
            "kind": "cluster",
            "identifier": "reports-aurora",
            "region": "eu-central-1",
            "enforce": "on",
            "time_zone": "Europe/Warsaw",
            "stop_at": "22:00",
            "stop_days": "*",
            "start_at": "07:00",
            "start_days": "mon-fri",
        },
    )

    assert response.status_code == 302, response.content.decode()[:2000]
    database = ManagedDatabase.objects.get(name="reports")
    assert database.stop_task is not None and database.start_task is not None
    assert database.start_task.crontab is not None
    assert database.start_task.crontab.day_of_week == "mon-fri"
    assert str(database.start_task.crontab.timezone) == "Europe/Warsaw"


def test_an_invalid_schedule_is_refused_in_the_form() -> None:
    client = staff("rds.add_manageddatabase", "rds.operate_manageddatabase")

    response = client.post(
        reverse("admin:rds_manageddatabase_add"),
        {
            "name": "bad",
            "kind": "instance",
            "identifier": "bad",
            "region": "us-east-1",
            "time_zone": "UTC",
            "stop_at": "22:00",
            "stop_days": "someday",
            "start_days": "*",
        },
    )

    assert response.status_code == 200
    # Beside the field, in words (it was the parser's "Invalid weekday literal 'someday'.").
    assert response.context["adminform"].form.errors["stop_days"] == [
        '"someday" is not valid here: use days of the week 0-6 (Sunday is 0) or sun-sat, '
        'e.g. "1-5", "mon-fri" or "*".'
    ]
    assert not ManagedDatabase.objects.exists()
    assert not PeriodicTask.objects.filter(name__startswith="rds: nightly").exists()


def test_change_form_shows_the_schedule_as_beat_has_it() -> None:
    database = register("shown")
    client = staff("rds.view_manageddatabase")

    page = client.get(reverse("admin:rds_manageddatabase_change", args=[database.pk]))

    assert page.status_code == 200
    assert page.context["adminform"].form.initial["stop_at"].hour == 22
    assert page.context["adminform"].form.initial["time_zone"] == "Europe/Warsaw"


def test_a_read_only_page_says_the_schedule_instead_of_none() -> None:
    database = register("looked-at")
    client = staff("rds.view_manageddatabase", "rds.operate_manageddatabase")

    page = client.get(reverse("admin:rds_manageddatabase_change", args=[database.pk]))

    html = page.content.decode()
    assert 'name="_save"' not in html, "read-only"
    assert "None" not in html
    assert "stop at 22:00 every day; start at 07:00 on days 1-5 (Europe/Warsaw)" in html


def test_a_schedule_changes_only_with_the_operate_permission_too() -> None:
    database = register("timed")
    page = reverse("admin:rds_manageddatabase_change", args=[database.pk])
    every_morning = {
        "name": "timed",
        "kind": "instance",
        "identifier": database.identifier,
        "region": database.region,
        "time_zone": "UTC",
        "stop_at": "09:05",
        "stop_days": "*",
        "start_at": "",
        "start_days": "*",
    }
    editor = staff("rds.view_manageddatabase", "rds.change_manageddatabase", username="editor")

    assert 'name="_save"' not in editor.get(page).content.decode()
    assert editor.post(page, every_morning).status_code == 403
    assert editor.post(page.replace("change", "delete"), {"post": "yes"}).status_code == 403
    database.refresh_from_db()
    assert database.start_task is not None
    assert database.stop_task is not None and database.stop_task.crontab is not None
    assert database.stop_task.crontab.hour == "22"

    operator = staff(
        "rds.view_manageddatabase",
        "rds.change_manageddatabase",
        "rds.operate_manageddatabase",
        username="operator",
    )
    assert operator.post(page, every_morning).status_code == 302
    database.refresh_from_db()
    assert database.start_task is None
    assert database.stop_task is not None and database.stop_task.crontab is not None
    assert (database.stop_task.crontab.hour, database.stop_task.crontab.minute) == ("9", "5")


def _until_tomorrow() -> str:
    return (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")


@pytest.mark.parametrize(
    ("action", "extra"),
    [
        ("stop_now", {}),
        ("start_now", {}),
        ("refresh_state", {}),
        ("keep_running_until", {"apply": "1", "until": _until_tomorrow}),
    ],
)
def test_every_action_needs_the_operate_permission(
    sqs_queues: AwsEndpoint, action: str, extra: dict[str, object]
) -> None:
    database = register("guarded")
    viewer = staff("rds.view_manageddatabase", "rds.change_manageddatabase", username="viewer")
    data = {k: v() if callable(v) else v for k, v in extra.items()}

    page = viewer.get(reverse(CHANGELIST))
    response = viewer.post(
        reverse(CHANGELIST), {"action": action, "_selected_action": [database.pk], **data}
    )

    assert f'value="{action}"' not in page.content.decode(), "offered without the permission"
    assert response.status_code in (200, 302)
    assert not DatabaseAction.objects.exists()
    assert not Job.objects.exists()
    database.refresh_from_db()
    assert database.keep_running_until is None

    # The same request by an operator does act: the refusal above is the permission's.
    operator = staff("rds.view_manageddatabase", "rds.operate_manageddatabase")
    assert f'value="{action}"' in operator.get(reverse(CHANGELIST)).content.decode()
    operator.post(
        reverse(CHANGELIST),
        {"action": action, "_selected_action": [database.pk], **data},
    )
    assert DatabaseAction.objects.filter(database=database).exists()


def test_stop_now_queues_a_job_requested_by_the_user(sqs_queues: AwsEndpoint) -> None:
    database = register("stopme")
    operator = staff("rds.view_manageddatabase", "rds.operate_manageddatabase")

    response = operator.post(
        reverse(CHANGELIST), {"action": "stop_now", "_selected_action": [database.pk]}
    )

    assert response.status_code == 302
    action = DatabaseAction.objects.get(database=database)
    assert action.action == "stop" and action.requester == "User: staff2"
    assert action.requested_by is not None and action.requested_by.get_username() == "staff2"
    assert Job.objects.get(task_id=action.task_id).requested_by is not None


def test_keep_running_until_asks_for_a_time_then_queues_a_start(sqs_queues: AwsEndpoint) -> None:
    database = register("late-night")
    operator = staff("rds.view_manageddatabase", "rds.operate_manageddatabase")
    data = {"action": "keep_running_until", "_selected_action": [database.pk]}

    form_page = operator.post(reverse(CHANGELIST), data)
    assert form_page.status_code == 200
    assert "Keep running" in form_page.content.decode()
    # The zone is named once, above the form (its field's help said it again).
    html = form_page.content.decode()
    assert 'id="keep-running-zone">Europe/Warsaw</strong>' in html
    assert html.count("Europe/Warsaw") == 1

    # The time typed is read in the zone of the database's schedule, not the site's (UTC).
    warsaw = ZoneInfo("Europe/Warsaw")
    until = (timezone.now() + timedelta(days=1)).astimezone(warsaw).replace(second=0, microsecond=0)
    done = operator.post(
        reverse(CHANGELIST), {**data, "apply": "1", "until": until.strftime("%Y-%m-%dT%H:%M")}
    )

    assert done.status_code == 302
    database.refresh_from_db()
    assert database.keep_running_until == until
    assert DatabaseAction.objects.get(database=database).action == "start"


def test_keep_running_until_a_past_time_keeps_the_form_with_the_error(
    sqs_queues: AwsEndpoint,
) -> None:
    database = register("too-late")
    operator = staff("rds.view_manageddatabase", "rds.operate_manageddatabase")
    data = {"action": "keep_running_until", "_selected_action": [database.pk], "apply": "1"}

    response = operator.post(reverse(CHANGELIST), {**data, "until": "2020-01-01T10:00"})

    assert response.status_code == 200
    page = response.content.decode()
    assert "2020-01-01 10:00 Europe/Warsaw has passed" in page
    assert 'value="2020-01-01T10:00"' in page
    assert not DatabaseAction.objects.exists()
    database.refresh_from_db()
    assert database.keep_running_until is None


def test_action_messages_link_the_action_record_and_its_job(sqs_queues: AwsEndpoint) -> None:
    database = register("linked-stop")
    operator = staff(
        "rds.view_manageddatabase",
        "rds.operate_manageddatabase",
        "rds.view_databaseaction",
        "django_celery_results.view_taskresult",
    )

    response = operator.post(
        reverse(CHANGELIST), {"action": "stop_now", "_selected_action": [database.pk]}, follow=True
    )

    action = DatabaseAction.objects.get()
    page = response.content.decode()
    assert f'href="{reverse("admin:rds_databaseaction_change", args=[action.pk])}"' in page
    assert f'href="{reverse("workers:job-detail", args=[action.task_id])}">job and log' in page


def test_non_staff_cannot_reach_the_admin() -> None:
    user = get_user_model().objects.create_user("outsider")
    client = Client()
    client.force_login(user)

    response = client.get(reverse(CHANGELIST))

    assert response.status_code == 302 and "/login/" in response["Location"]


def test_history_links_open_the_database_actions_and_divergences() -> None:
    database = register("linked")
    client = staff(
        "rds.view_manageddatabase",
        "rds.view_databaseaction",
        "rds.view_divergence",
        "dashboard.view_dashboard",
    )
    page = client.get(reverse("admin:rds_manageddatabase_change", args=[database.pk]))
    assert f"?database__id__exact={database.pk}" in page.content.decode()
    changelist = client.get(reverse(CHANGELIST))
    assert reverse("dashboard:infrastructure") in changelist.content.decode()
    # Not offered to whom the dashboard would refuse.
    without = staff("rds.view_manageddatabase", username="no-dashboard")
    assert (
        reverse("dashboard:infrastructure") not in without.get(reverse(CHANGELIST)).content.decode()
    )

    for name in ("admin:rds_databaseaction_changelist", "admin:rds_divergence_changelist"):
        response = client.get(reverse(name), {"database__id__exact": database.pk})
        assert response.status_code == 200


def test_broker_down_reports_an_error_and_changes_nothing(
    sqs_queues: AwsEndpoint, monkeypatch: pytest.MonkeyPatch
) -> None:
    database = register("unqueued")
    operator = staff("rds.view_manageddatabase", "rds.operate_manageddatabase")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", f"http://127.0.0.1:{free_port()}")
    drop_broker_connections()
    try:
        response = operator.post(
            reverse(CHANGELIST),
            {"action": "stop_now", "_selected_action": [database.pk]},
            follow=True,
        )
    finally:
        monkeypatch.undo()
        drop_broker_connections()

    assert "unreachable" in response.content.decode()
    assert not DatabaseAction.objects.exists()
    database.refresh_from_db()
    assert database.desired_state == "running"


def test_a_malformed_identifier_or_region_is_refused_in_the_form() -> None:
    client = staff("rds.add_manageddatabase", "rds.operate_manageddatabase")

    response = client.post(
        reverse("admin:rds_manageddatabase_add"),
        {
            "name": "typo",
            "kind": "instance",
            "identifier": "orders db",
            "region": "eu-central",
            "time_zone": "UTC",
            "stop_at": "22:00",
            "stop_days": "*",
            "start_days": "*",
        },
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"identifier", "region"}
    assert not ManagedDatabase.objects.exists()


def test_a_database_with_a_history_offers_no_delete_that_could_only_be_refused() -> None:
    """Its Delete button led even a superuser to "Cannot delete managed database": its
    actions and divergences are an audit trail nobody may delete."""
    database = register("recorded")
    root = get_user_model().objects.create_superuser("root", password="pw-x")
    client = Client()
    client.force_login(root)
    page = reverse("admin:rds_manageddatabase_change", args=[database.pk])
    delete = reverse("admin:rds_manageddatabase_delete", args=[database.pk])
    assert f'href="{delete}"' in client.get(page).content.decode(), "no history yet: deletable"

    DatabaseAction.objects.create(
        database=database, action="stop", requester_kind="cli", requester_label="t"
    )
    assert f'href="{delete}"' not in client.get(page).content.decode()
    assert client.get(delete).status_code == 403


def test_an_action_page_is_titled_with_its_state_in_words_not_its_code() -> None:
    action = DatabaseAction.objects.create(
        database=register("idle"),
        action="stop",
        requester_kind="cli",
        requester_label="t",
        state="noop",
        finished_at=timezone.now(),
    )
    client = staff("rds.view_databaseaction")

    page = client.get(reverse("admin:rds_databaseaction_change", args=[action.pk]))

    assert "<h2>Stop idle (nothing to do)</h2>" in page.content.decode()


def test_an_action_page_shows_its_job_live_and_its_own_fields_once_the_job_expired() -> None:
    from django_celery_results.models import TaskResult

    database = register("watched")
    action = DatabaseAction.objects.create(
        database=database,
        action="stop",
        requester_kind="cli",
        requester_label="t",
        task_id="t-1",
        state="running",
    )
    TaskResult.objects.create(
        task_id="t-1", task_name="infra_tasks.rds.tasks.database_action_execute", status="STARTED"
    )
    client = staff("rds.view_databaseaction", "django_celery_results.view_taskresult")
    url = reverse("admin:rds_databaseaction_change", args=[action.pk])

    live = client.get(url).content.decode()
    assert 'id="job-live"' in live and 'data-reload-on-end="1"' in live
    assert '<strong id="job-subject-state">Running</strong>' in live
    # The form below does not repeat, frozen, what the live summary shows.
    assert "field-state" not in live and "field-message" not in live
    assert f'href="{reverse("workers:job-detail", args=["t-1"])}"' in live

    TaskResult.objects.all().delete()  # results expire after JOB_RESULT_EXPIRES_DAYS
    expired = client.get(url).content.decode()
    assert "field-state" in expired and "No record of this job" in expired
