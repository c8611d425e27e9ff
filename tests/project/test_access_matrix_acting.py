"""The access matrix for the roles that may act: a superuser (everything) and the dev
stack's "Database operators" (databases and their schedules). The same sweep as
test_access_matrix.py (every URL of the URL conf by GET and POST, every action of every
registered admin), and every button each page renders, pressed with the values the page
gives it. Each request runs in a savepoint rolled back after it, so what one press changes
or deletes does not decide what the next one finds.

For both roles: no request answers 5xx, no GET writes anything, no button a page offers
answers 403, and no page shows a secret (the Django secret key, AWS and Flower
credentials, a password hash). The operator's requests write only to its own families'
tables and the job records; it never starts a job of another family.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, transaction
from django.http.response import HttpResponseBase
from django.test import Client, override_settings

from project.settings import flower_url_setting
from tests.support.access import (
    ACTING_ROLES,
    Probe,
    changed_tables,
    fingerprint,
    probes,
    role_user,
    seed_jobs,
)
from tests.support.html_checks import CSRF_FIELD, page_post_forms
from tests.support.records import seed_records
from workers.families import family_for_task
from workers.models import Job

pytestmark = [
    pytest.mark.django_db,
    # What Django 6.0 turns into an error is a 500 waiting to happen: reported as one here.
    pytest.mark.filterwarnings("error::django.utils.deprecation.RemovedInDjango60Warning"),
]

SECRET_KEY = "sentinel-secret-key-7f3a9c1e-never-shown"
PLANTED_ENVIRONMENT = {
    "AWS_SECRET_ACCESS_KEY": "sentinel-aws-secret-0b5e2d",
    "FLOWER_BASIC_AUTH": "ops:sentinel-flower-password-91c4",
}
# Flower's address as an operator might give it, with a login in it: the admin links to it.
FLOWER_PASSWORD = "sentinel-flower-url-password-5a2b"
FLOWER_URL = f"https://ops:{FLOWER_PASSWORD}@flower.example.com/"
# The operator's families (databases; schedules, which start them), what starting a job
# writes, and what every admin request may write: a history entry, a queued message.
OPERATOR_TABLES = ("rds_", "django_celery_beat_")
JOB_TABLES = (
    "django_celery_results_taskresult",
    "workers_job",
    "workers_outbox",
    "django_admin_log",
)


@pytest.fixture
def planted_secrets(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Secrets a page must never show, set where the project reads them."""
    for name, value in PLANTED_ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    with override_settings(SECRET_KEY=SECRET_KEY, FLOWER_URL=flower_url_setting(FLOWER_URL)):
        database_password = connection.settings_dict["PASSWORD"]
        yield [SECRET_KEY, FLOWER_PASSWORD, database_password, *PLANTED_ENVIRONMENT.values()]


def body(response: Any) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return str(content.decode(errors="replace"))


def leaks(text: str, secrets: list[str]) -> list[str]:
    hashes = list(get_user_model().objects.values_list("password", flat=True))
    return [s for s in [*secrets, *hashes] if s and s in text]


@dataclass
class Answer:
    response: HttpResponseBase
    text: str
    written: list[str]  # the tables it wrote to
    started: list[str]  # the task names of the jobs it queued


def rolled_back(request: Callable[[], HttpResponseBase]) -> Answer:
    """The answer to `request`, made in a savepoint that is then rolled back."""
    jobs_before = set(Job.objects.values_list("task_id", flat=True))
    with transaction.atomic():
        before = fingerprint()
        response = request()
        text = body(response)  # a streamed response runs its queries as it is read
        written = changed_tables(before, fingerprint())
        started = list(
            Job.objects.exclude(task_id__in=jobs_before).values_list("task_name", flat=True)
        )
        transaction.set_rollback(True)
    return Answer(response, text, written, started)


def logged_in_client(user: Any, **kwargs: Any) -> Client:
    client = Client(raise_request_exception=False, **kwargs)  # a 500 is reported with the rest
    client.force_login(user)
    return client


def stays_logged_in(client: Client, user: Any) -> None:
    if "_auth_user_id" not in client.session:
        client.force_login(user)  # a rolled-back logout still dropped the cookie


def operator_may_write(table: str) -> bool:
    return table.startswith(OPERATOR_TABLES) or table in JOB_TABLES


def check(role: str, method: str, what: str, answer: Answer, secrets: list[str]) -> list[str]:
    """What is wrong with an acting role's answer: a 5xx, a GET that wrote, a secret shown;
    for the operator, a write or a job outside its families."""
    problems = []
    if answer.response.status_code >= 500:
        problems.append(f"{what}: HTTP {answer.response.status_code}")
    if method == "GET" and answer.written:
        problems.append(f"{what}: a GET wrote to {', '.join(answer.written)}")
    problems += [f"{what} shows {s!r}" for s in leaks(answer.text, secrets)]
    if role == "operator":
        foreign = [t for t in answer.written if not operator_may_write(t)]
        if foreign:
            problems.append(f"{what}: the operator wrote to {', '.join(foreign)}")
        for task in answer.started:
            family = family_for_task(task)
            if family is None or family.name != "Databases":
                problems.append(f"{what}: the operator started {task}")
    return problems


@pytest.mark.parametrize("role", ACTING_ROLES)
def test_a_role_that_may_act_meets_no_error_and_no_get_writes(
    role: str, sqs_queues: Any, planted_secrets: list[str]
) -> None:
    seed_records()
    task_ids = seed_jobs()
    user = role_user(role)
    client = logged_in_client(user)
    sweep = probes(task_ids, every_row=True)
    assert len(sweep) > 300

    problems = []
    for probe in sweep:
        stays_logged_in(client, user)

        def send(probe: Probe = probe) -> HttpResponseBase:
            if probe.method == "GET":
                return client.get(probe.url)
            return client.post(probe.url, probe.data)

        problems += check(role, probe.method, str(probe), rolled_back(send), planted_secrets)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ACTING_ROLES)
def test_every_button_a_page_offers_a_role_works_for_it(
    role: str, sqs_queues: Any, planted_secrets: list[str]
) -> None:
    """Every page the role may open, walked for its POST forms; each is submitted as the
    browser would (its fields, its CSRF token, the button pressed; for an admin's action
    bar, each action it lists on every row shown). None may answer 403 (offered but
    refused) or 5xx, and none may show a secret."""
    seed_records()
    task_ids = seed_jobs()
    user = role_user(role)
    client = logged_in_client(user, enforce_csrf_checks=True)
    pages = [p.url for p in probes(task_ids, every_row=True) if p.method == "GET"]
    problems = []
    pressed = 0
    for page in pages:
        stays_logged_in(client, user)
        response = client.get(page)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        for form in page_post_forms(body(response)):
            target = urljoin(page, form.action or page)
            if not urlsplit(target).path.startswith("/") or target.endswith("/logout/"):
                continue
            for data in form.submissions():
                what = f"POST {target} from {page} {data.get('action', '')}".rstrip()
                if CSRF_FIELD not in data:
                    problems.append(f"{what}: the form has no CSRF token")
                    continue

                def send(target: str = target, data: dict[str, Any] = data) -> HttpResponseBase:
                    stays_logged_in(client, user)
                    return client.post(target, data)

                answer = rolled_back(send)
                pressed += 1
                if answer.response.status_code == 403:
                    problems.append(f"{what}: offered, but answers 403")
                problems += check(role, "POST", what, answer, planted_secrets)
    assert pressed > (100 if role == "superuser" else 5)
    assert not problems, "\n".join(problems)


def test_the_planted_secrets_are_where_the_project_reads_them(
    planted_secrets: list[str],
) -> None:
    """The sweep's secrets are real ones: what the settings and boto3 would use."""
    from django.conf import settings

    assert settings.SECRET_KEY == SECRET_KEY
    assert settings.FLOWER_URL == "https://flower.example.com/"
    assert os.environ["AWS_SECRET_ACCESS_KEY"] in planted_secrets
