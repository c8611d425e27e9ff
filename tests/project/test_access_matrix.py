"""The access matrix: every URL of the URL conf (admin pages, custom admin views, /ops/, job
logs) by GET and POST, and every action of every registered admin on every row, for the four
roles that may act on nothing: anonymous, non-staff (holding every permission), staff
without permissions, staff with every view permission. None of them may change a row or
queue a job. New admins and views are found from the registry and the URL conf."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.support.access import (
    ROLES,
    changed_tables,
    fingerprint,
    probes,
    role_user,
    seed_jobs,
)
from tests.support.records import seed_records
from workers.models import Job

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ROLES)
def test_a_role_that_may_only_look_changes_nothing_and_queues_nothing(role: str) -> None:
    seed_records()
    task_ids = seed_jobs()
    client = Client(raise_request_exception=False)  # a 500 is reported with the rest
    user = role_user(role)
    if user is not None:
        client.force_login(user)
    jobs_before = set(Job.objects.values_list("task_id", flat=True))
    sweep = probes(task_ids)
    assert len(sweep) > 200  # the whole site, not a corner of it

    problems = []
    for probe in sweep:
        if user is not None and "_auth_user_id" not in client.session:
            client.force_login(user)  # the sweep's POST to the logout view logged it out
        before = fingerprint()
        if probe.method == "GET":
            response = client.get(probe.url)
        else:
            response = client.post(probe.url, probe.data)
        if response.status_code >= 500:
            problems.append(f"{probe}: HTTP {response.status_code}")
        changed = changed_tables(before, fingerprint())
        if changed:
            problems.append(f"{probe}: changed {', '.join(changed)}")
    assert not problems, "\n".join(problems)
    assert set(Job.objects.values_list("task_id", flat=True)) == jobs_before
