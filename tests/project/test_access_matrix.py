"""The access matrix: every URL of the URL conf (admin pages, custom admin views, /ops/, job
logs) by GET and POST, and every action of every registered admin on every row, for the four
roles that may act on nothing: anonymous, non-staff (holding every permission), staff
without permissions, staff with every view permission. None of them may change a row or
queue a job, and each opens only the pages its role allows (OPEN_TO). And a POST without
a CSRF token is refused, even a superuser's. New admins and views are found from the
registry and the URL conf."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin, urlsplit

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import resolve, reverse

from tests.support.access import (
    NARROW_VIEW_ROLES,
    ROLES,
    changed_tables,
    fingerprint,
    probes,
    role_user,
    seed_jobs,
)
from tests.support.html_checks import page_offers, page_post_forms
from tests.support.records import seed_records
from workers.models import Job

pytestmark = pytest.mark.django_db

# What each role may open (HTTP 200) at all; everything else sends it to the login page, or
# answers 403, 404 or 405.
PUBLIC = ("/healthz/", "/api/", "/admin/login/")
OPEN_TO = {
    "anonymous": PUBLIC,
    "non-staff": PUBLIC,
    "staff-without-permissions": (
        *PUBLIC,
        "/admin/jsi18n/",
        "/admin/password_change/",
        "/admin/logout/",  # asks before logging out: a GET changes nothing
    ),
    # Every list and record, read-only: what "view" means.
    "staff-view-only": ("/",),
}


def may_open(role: str, path: str) -> bool:
    # Any staff member sees the admin's home (saying what they may do, if nothing).
    staff_home = role.startswith("staff") and path == "/admin/"
    return staff_home or path.startswith(OPEN_TO[role])


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
    before = fingerprint()
    for probe in sweep:
        if user is not None and "_auth_user_id" not in client.session:
            client.force_login(user)  # the sweep's POST to the logout view logged it out
            before = fingerprint()  # logging in stamps last_login
        if probe.method == "GET":
            response = client.get(probe.url)
        else:
            response = client.post(probe.url, probe.data)
        if response.status_code >= 500:
            problems.append(f"{probe}: HTTP {response.status_code}")
        elif (
            probe.method == "GET"
            and response.status_code == 200
            and not may_open(role, urlsplit(probe.url).path)
        ):
            # A view that forgot its permission check shows its page to whoever asks.
            problems.append(f"{probe}: HTTP 200 for {role}")
        elif response.status_code == 403 and b'id="refusal"' not in response.content:
            # Every refusal says whose account lacks what, and the way back.
            problems.append(f"{probe}: a bare 403, not the refusal page")
        after = fingerprint()
        changed = changed_tables(before, after)
        if changed:
            problems.append(f"{probe}: changed {', '.join(changed)}")
        before = after
    assert not problems, "\n".join(problems)
    assert set(Job.objects.values_list("task_id", flat=True)) == jobs_before


def test_every_post_without_a_csrf_token_is_refused_even_for_a_superuser() -> None:
    seed_records()
    task_ids = seed_jobs()
    client = Client(enforce_csrf_checks=True, raise_request_exception=False)
    client.force_login(get_user_model().objects.create_superuser("root"))
    jobs_before = Job.objects.count()

    problems = []
    before = fingerprint()
    for probe in probes(task_ids):
        if probe.method != "POST":
            continue
        status = client.post(probe.url, probe.data).status_code
        after = fingerprint()
        changed = changed_tables(before, after)
        if status not in (403, 405) or changed:
            problems.append(f"{probe}: HTTP {status}, changed {changed or 'nothing'}")
        before = after
    assert not problems, "\n".join(problems)
    assert Job.objects.count() == jobs_before


@pytest.mark.parametrize(
    "role", ["staff-without-permissions", "staff-view-only", *NARROW_VIEW_ROLES]
)
def test_a_role_that_may_only_look_is_offered_no_button_and_no_link_that_refuses_it(
    role: str,
) -> None:
    """What is refused is not offered: every page the role may open, walked for the buttons
    it shows (none may post but logging out, and changing one's own password) and the links
    it shows (none may answer 403). The narrow roles see one corner of a family: a
    record's read-only foreign keys, its job and its history lead next to it."""
    seed_records()
    seed_neighbours()
    task_ids = seed_jobs()
    user = role_user(role)
    assert user is not None
    client = Client()
    client.force_login(user)
    pages = [p.url for p in probes(task_ids) if p.method == "GET"]
    offered_links: dict[str, str] = {}  # path -> the page that links to it
    problems = []
    for page in pages:
        response = client.get(page)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        links, forms = page_offers(response.content.decode())
        if page != reverse("admin:password_change"):
            problems += [
                f"{page} offers a button posting to {form!r}"
                for form in forms
                if not form.endswith("/logout/")
            ]
        for href in links:
            url = urljoin(page, href)
            path = urlsplit(url).path
            if url.startswith("/") and not path.startswith(("/static/", "/media/")):
                offered_links.setdefault(url.split("#")[0], page)
    for url, page in offered_links.items():
        status = client.get(url).status_code
        if status == 403:
            problems.append(f"{page} links to {url}, which answers 403")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("role", ["staff-view-only", "operator"])
def test_an_action_a_role_is_not_offered_is_refused_with_a_message_saying_so(role: str) -> None:
    """Every action of every admin, posted by a role whose permissions leave it out of the
    list's action menu: back to the list, told that it needs a permission, nothing changed
    and nothing queued. (Django alone showed the list again without a word, or said "No
    action selected.")"""
    seed_records()
    task_ids = seed_jobs()
    user = role_user(role)
    assert user is not None
    client = Client(raise_request_exception=False)
    client.force_login(user)
    jobs_before = Job.objects.count()
    problems = []
    refused = 0
    before = fingerprint()
    for probe in probes(task_ids):
        if "action" not in probe.data:
            continue
        model_admin = admin_for_changelist(probe.url)
        request = RequestFactory().get(probe.url)
        request.user = user
        if not model_admin.has_view_or_change_permission(request) or probe.data[
            "action"
        ] in model_admin.get_actions(request):
            continue  # the list refuses the role outright, or offers it the action
        response = client.post(probe.url, probe.data)
        refused += 1
        shown = client.get(probe.url).content.decode() if response.status_code == 302 else ""
        if response.status_code != 302 or "needs a permission you do not have" not in shown:
            problems.append(f"{probe}: HTTP {response.status_code}, not told it is refused")
        after = fingerprint()
        changed = changed_tables(before, after)
        if changed:
            problems.append(f"{probe}: changed {', '.join(changed)}")
        before = after
    assert refused > (30 if role == "staff-view-only" else 3)
    assert not problems, "\n".join(problems)
    assert Job.objects.count() == jobs_before


@pytest.mark.parametrize("role", ROLES)
def test_every_button_a_superuser_is_offered_pressed_by_a_role_that_may_only_look_does_nothing(
    role: str,
) -> None:
    """The sweep above posts nothing but an action's name. Here every form of every page a
    superuser opens is submitted with the values the page gives it (a valid change form, an
    action on every row with its confirmation, Plan, Approve, Run now, Retry, Pause...), as a
    person whose permissions were taken away after the page was opened would submit it, or
    one who copied it: refused, nothing changed and nothing queued."""
    seed_records()
    task_ids = seed_jobs()
    superuser = Client()
    superuser.force_login(get_user_model().objects.create_superuser("root"))
    user = role_user(role)
    client = Client(raise_request_exception=False)
    if user is not None:
        client.force_login(user)
    jobs_before = set(Job.objects.values_list("task_id", flat=True))
    problems = []
    pressed: set[str] = set()
    before = fingerprint()
    for page in [p.url for p in probes(task_ids, every_row=True) if p.method == "GET"]:
        response = superuser.get(page)
        if response.status_code != 200 or "html" not in response.get("Content-Type", ""):
            continue
        for form in page_post_forms(response.content.decode()):
            target = urljoin(page, form.action or page)
            if target.endswith("/logout/"):
                continue
            for data in form.submissions():
                what = f"POST {target} {data.get('action', '')} {sorted(data)}"
                if what in pressed:
                    continue
                pressed.add(what)
                if user is not None and "_auth_user_id" not in client.session:
                    client.force_login(user)
                    before = fingerprint()
                status = client.post(target, data).status_code
                after = fingerprint()
                changed = changed_tables(before, after)
                if status >= 500 or changed:
                    problems.append(f"{what}: HTTP {status}, changed {changed or 'nothing'}")
                before = after
    assert len(pressed) > 150
    assert not problems, "\n".join(problems)
    assert set(Job.objects.values_list("task_id", flat=True)) == jobs_before


def seed_neighbours() -> None:
    """Records that point at others: a divergence with its corrective job, a database's
    stop and start schedules, an enrolment and a completion."""
    from courses.models import Course, Enrolment, Lesson, LessonCompletion, Section
    from infra_tasks.rds.models import DatabaseAction, Divergence, ManagedDatabase

    database = ManagedDatabase.objects.get()
    assert database.stop_task_id and database.start_task_id  # its schedules, as beat has them
    Divergence.objects.create(
        database=database,
        desired_state="stopped",
        observed_status="available",
        corrective_task_id=DatabaseAction.objects.get().task_id,
    )
    course = Course.objects.get()
    section = Section.objects.create(course=course, title="Basics", position=1)
    lesson = Lesson.objects.create(section=section, title="Light", position=1)
    student = get_user_model().objects.create_user("student")
    Enrolment.objects.create(user=student, course=course)
    LessonCompletion.objects.create(user=student, lesson=lesson)


def admin_for_changelist(url: str) -> Any:
    view: Any = resolve(urlsplit(url).path).func
    return view.model_admin  # set by ModelAdmin.get_urls on each of its views


@pytest.mark.parametrize(
    "login_url",
    [
        "/admin/login/",
        "/admin/login/?next=",
        "/admin/login/?next=https://elsewhere.example/admin/",
        "/admin/login/?next=//elsewhere.example/",
    ],
)
def test_a_login_with_no_next_page_of_this_site_lands_on_the_jobs_home(login_url: str) -> None:
    """A `next` that is missing, empty or another site's is not followed (no open
    redirect), and the person signed in lands on the Jobs home: Django's default,
    /accounts/profile/, is no page of this site and answered 404 right after a good login."""
    get_user_model().objects.create_user("signing-in", password="pw-123456", is_staff=True)
    client = Client()
    page = client.get(login_url)
    assert page.status_code == 200
    next_page = page.context.get("next", "")  # the form's hidden field

    response = client.post(
        login_url, {"username": "signing-in", "password": "pw-123456", "next": next_page}
    )

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:index")
    assert client.get(response["Location"]).status_code == 200


def test_a_button_pressed_after_its_permission_was_taken_away_is_refused_saying_why() -> None:
    """A person opens the Jobs home, which offers them the diagnostic job's button; their
    permission is taken away while the page stands open; they press it. Nothing is queued,
    and the refusal is an admin page naming their account and leading back to the Jobs
    home (Django's own read "403 Forbidden" and nothing else)."""
    user = get_user_model().objects.create_user("losing-it", is_staff=True)
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["run_diagnostic", "view_taskresult"])
    )
    client = Client()
    client.force_login(user)
    trigger = reverse("workers:diagnostic-trigger")
    assert f'action="{trigger}"' in client.get(reverse("admin:index")).content.decode()
    user.user_permissions.clear()

    response = client.post(trigger)

    assert response.status_code == 403
    refusal = response.content.decode()
    assert 'id="refusal"' in refusal and "losing-it" in refusal
    assert f'href="{reverse("admin:index")}"' in refusal
    # Logged out meanwhile (in another tab): told so, and led to the login.
    client.post(reverse("admin:logout"))
    signed_out = client.post(trigger).content.decode()
    assert "not logged in" in signed_out and f'href="{reverse("admin:login")}"' in signed_out
    assert not Job.objects.exists()
