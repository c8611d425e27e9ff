"""The dev stack's permission groups: look-only staff see everything and run nothing."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from tests.infra_tasks.rds.support import register
from tests.support.servers import AwsEndpoint
from workers.demo import DATABASE_OPERATORS, DEMO_BODY, LOOK_ONLY, dead_letter_seed, groups_seed
from workers.models import Job

pytestmark = pytest.mark.django_db


def member_of(group: str) -> Client:
    user = get_user_model().objects.create_user(f"member-{len(group)}", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client = Client()
    client.force_login(user)
    return client


def test_look_only_staff_see_the_schedules_but_cannot_run_one(sqs_queues: AwsEndpoint) -> None:
    groups_seed(stdout=io.StringIO())
    groups_seed(stdout=io.StringIO())  # again on every start: no duplicates
    register("demo-postgres")
    schedule = PeriodicTask.objects.get(name="rds: nightly stop of demo-postgres")
    changelist = reverse("admin:django_celery_beat_periodictask_changelist")
    run = {"action": "run_tasks", "_selected_action": [schedule.pk]}

    viewer = member_of(LOOK_ONLY)
    assert viewer.get(changelist).status_code == 200
    viewer.post(changelist, run)
    assert not Job.objects.exists()

    member_of(DATABASE_OPERATORS).post(changelist, run)
    assert Job.objects.get().task_name == schedule.task


def test_the_demo_dead_letter_says_in_full_what_to_do_with_it(sqs_queues: AwsEndpoint) -> None:
    """Its preview on the operations page read "… (discard it on the op…": the instruction
    was cut at the page's 60 characters."""
    dead_letter_seed(stdout=io.StringIO())
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("root"))

    html = client.get("/ops/operations/").content.decode()

    assert f"<code>{DEMO_BODY}</code>" in html
    assert "Discard removes it" in DEMO_BODY
