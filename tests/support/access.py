"""The access matrix: every URL the project serves and every admin action, found from the URL
conf and the admin registry (a new admin or view is swept without editing a test), and the
writes to every table, to tell whether a request changed anything."""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from django.contrib import admin
from django.contrib.admin.sites import all_sites
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission, User
from django.db import connection
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_celery_beat.models import PeriodicTask
from django_celery_results.models import GroupResult

from tests.support.jobs import job_record
from workers.families import FAMILIES

# Sessions change on every login; they are the one table a refused request may write.
UNWATCHED_TABLES = frozenset({"django_session"})
# URL names that are not the project's pages (development media, Django's own catch-all).
SKIPPED_URL_NAMES = frozenset({"admin:view_on_site"})

ROLES = ("anonymous", "non-staff", "staff-without-permissions", "staff-view-only")
# Staff who may look at a corner of one family and nothing around it: what they are offered
# must not lead to the pages next to it (a record's foreign keys, its job, its history).
NARROW_VIEW_ROLES = {
    # Divergences, not the databases or the database actions (their jobs' family).
    "divergences-viewer": ("rds.view_divergence", "django_celery_results.view_taskresult"),
    # Databases and their actions, not their schedules nor their divergences.
    "databases-viewer": (
        "rds.view_manageddatabase",
        "rds.view_databaseaction",
        "django_celery_results.view_taskresult",
    ),
    # Who is enrolled and what they completed, not the courses, sections or users.
    "enrolments-viewer": ("courses.view_enrolment", "courses.view_lessoncompletion"),
    # Terraform runs, not their workspaces.
    "runs-viewer": ("terraform.view_terraformrun", "django_celery_results.view_taskresult"),
}
# Roles that may act: on what their permissions name (operator), on everything (superuser).
ACTING_ROLES = ("operator", "superuser")


@dataclass(frozen=True)
class Probe:
    """One request of the sweep."""

    method: str
    url: str
    data: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = f" {self.data.get('action')}" if "action" in self.data else ""
        return f"{self.method} {self.url}{extra}"


def role_user(role: str) -> User | None:
    """The user of a role; the non-staff user holds every permission (staff is what counts)."""
    users = get_user_model().objects
    if role == "anonymous":
        return None
    if role == "non-staff":
        user = users.create_user("outsider", password="pw-123456")
        user.user_permissions.set(Permission.objects.all())
        return user
    if role == "staff-without-permissions":
        return users.create_user("bare-staff", password="pw-123456", is_staff=True)
    if role == "staff-view-only":
        user = users.create_user("viewer", password="pw-123456", is_staff=True)
        user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
        return user
    if role == "operator":
        # The dev stack's "Database operators": databases and their schedules, nothing else.
        from workers.demo import DATABASE_OPERATORS, groups_seed

        groups_seed(stdout=io.StringIO())
        user = users.create_user("operator", password="pw-123456", is_staff=True)
        user.groups.add(Group.objects.get(name=DATABASE_OPERATORS))
        return user
    if role in NARROW_VIEW_ROLES:
        user = users.create_user(role, password="pw-123456", is_staff=True)
        for name in NARROW_VIEW_ROLES[role]:
            app_label, codename = name.split(".")
            user.user_permissions.add(
                Permission.objects.get(content_type__app_label=app_label, codename=codename)
            )
        return user
    if role == "superuser":
        return users.create_superuser("root", password="pw-123456")
    raise ValueError(role)


def seed_jobs() -> list[str]:
    """One finished job per family (and one no family claims), each with its log."""
    task_ids = []
    names = [
        f.prefixes[0] + ("tasks.sweep" if f.prefixes[0].endswith(".") else "") for f in FAMILIES
    ]
    for n, name in enumerate([*names, "elsewhere.tasks.sweep"]):
        task_id = f"sweep-job-{n}"
        job_record(task_id, name, status="SUCCESS", requester_label="sweep", log=f"log of {name}")
        task_ids.append(task_id)
    GroupResult.objects.create(group_id="sweep-group")
    return task_ids


def _pks(model: Any, every_row: bool) -> list[str]:
    """The first row's id, or the ids of every row (up to ROWS_PER_MODEL); a made-up id
    when there is none, so the page's refusal or 404 is swept too."""
    rows = model._default_manager.order_by("pk").values_list("pk", flat=True)
    pks = [str(pk) for pk in rows[: ROWS_PER_MODEL if every_row else 1]]
    return pks or ["999999"]


ROWS_PER_MODEL = 25

# Model admin URL parameters that are not the row's id: every value their view acts on.
ADMIN_URL_VALUES = {"what": ["approve", "discard", "cancel", "force_unlock"]}

# URL patterns with no name, each with how it is swept: the URL to request (None: not
# swept, and why). A new unnamed pattern fails the sweep until it is classified here.
UNNAMED_PATTERNS: dict[str, str | None] = {
    # Django's redirect from /admin/<app>/<model>/<id>/ to the change page: swept through
    # the change page itself, for every admin.
    "<path:object_id>/": None,
    # Django's catch-all: an unknown admin URL (login redirect for anonymous, 404 for staff).
    "(?P<url>.*)$": "/admin/no/such/page/",
    # Development media (DEBUG only; S3 with presigned URLs in production).
    "^media/(?P<path>.*)$": "/media/no/such/file.webp",
}


def admin_sites() -> list[admin.AdminSite]:
    """Every admin site the URL conf serves: a second site is swept like the first."""
    sites = list(all_sites)
    assert admin.site in sites
    return sites


def _kwargs(pattern: URLPattern, pk: str) -> Iterator[dict[str, str]]:
    names = list(pattern.pattern.regex.groupindex)
    choices = [ADMIN_URL_VALUES.get(name, [pk]) for name in names]
    for combination in itertools.product(*choices):
        yield dict(zip(names, combination, strict=True))


def _model_admin_urls(every_row: bool) -> Iterator[str]:
    """Every named URL of every model admin of every admin site, for the first row or for
    every row."""
    for site in admin_sites():
        for model, model_admin in site._registry.items():
            for pk in _pks(model, every_row):
                for pattern in model_admin.get_urls():
                    if not isinstance(pattern, URLPattern) or not pattern.name:
                        continue
                    for kwargs in _kwargs(pattern, pk):
                        yield reverse(f"{site.name}:{pattern.name}", kwargs=kwargs)


def _other_urls(task_ids: list[str]) -> Iterator[str]:
    """Every other URL of the URL conf; one per seeded job where a task id is taken."""
    model_admin_names = {
        f"{site.name}:{p.name}"
        for site in admin_sites()
        for model_admin in site._registry.values()
        for p in model_admin.get_urls()
        if isinstance(p, URLPattern) and p.name
    }
    app_label = next(iter(admin.site._registry))._meta.app_label
    from courses.models import Course

    course = Course.objects.order_by("pk").first()
    # Values for each parameter name the URL conf uses; a new one fails the sweep loudly.
    values: dict[str, list[str]] = {
        "task_id": task_ids,
        "app_label": [app_label],
        "slug": [course.slug if course else "no-such-course"],
        "path": ["no/such/page"],
        "periodic_task_id": _pks(PeriodicTask, every_row=True),
        "queue": ["default"],
        # A dead letter's id need not exist: refusal comes before any look at the queue.
        "message_id": ["no-such-message"],
        "action": ["redrive", "discard"],
    }

    def walk(patterns: list[Any], namespace: str) -> Iterator[str]:
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                inner = f"{namespace}{pattern.namespace}:" if pattern.namespace else namespace
                yield from walk(pattern.url_patterns, inner)
                continue
            if not pattern.name:
                route = str(pattern.pattern)
                assert route in UNNAMED_PATTERNS, (
                    f"the sweep does not know the unnamed URL pattern {route!r}: "
                    "name it, or classify it in UNNAMED_PATTERNS"
                )
                url = UNNAMED_PATTERNS[route]
                if url is not None:
                    yield url
                continue
            name = f"{namespace}{pattern.name}"
            if name in model_admin_names or name in SKIPPED_URL_NAMES:
                continue
            params = list(pattern.pattern.regex.groupindex)
            unknown = [p for p in params if p not in values]
            assert not unknown, f"the sweep does not know how to fill {name}: {unknown}"
            for combination in itertools.product(*(values[p] for p in params)):
                yield reverse(name, kwargs=dict(zip(params, combination, strict=True)))

    yield from walk(get_resolver().url_patterns, "")


def _action_probes() -> Iterator[Probe]:
    """Every action of every model admin of every site, on every row, with its
    confirmation fields."""
    superuser = get_user_model()(is_superuser=True, is_staff=True, is_active=True)
    request = RequestFactory().get("/")
    request.user = superuser
    for site in admin_sites():
        for model, model_admin in site._registry.items():
            url = reverse(
                f"{site.name}:{model._meta.app_label}_{model._meta.model_name}_changelist"
            )
            pks = [str(pk) for pk in model._default_manager.values_list("pk", flat=True)]
            for action in model_admin.get_actions(request):
                yield Probe(
                    "POST",
                    url,
                    {
                        "action": action,
                        "_selected_action": pks or ["999999"],
                        "index": "0",
                        # The confirmation step of delete, "keep running until" and their kin.
                        "post": "yes",
                        "apply": "1",
                    },
                )


def probes(task_ids: list[str], *, every_row: bool = False) -> list[Probe]:
    """The sweep: every URL by GET and POST (each admin's pages for its first row, or for
    every row), then every admin action."""
    urls = list(_model_admin_urls(every_row)) + list(_other_urls(task_ids))
    found = [Probe(method, url) for url in dict.fromkeys(urls) for method in ("GET", "POST")]
    return found + list(_action_probes())


def fingerprint() -> dict[str, str]:
    """Rows inserted, updated and deleted so far in this transaction (the test's), per
    watched table: any write, even one that sets a value it already had, changes it.
    PostgreSQL counts these per transaction (pg_stat_xact_user_tables), so one small query
    tells what a request wrote."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, n_tup_ins || '/' || n_tup_upd || '/' || n_tup_del "
            "FROM pg_stat_xact_user_tables"
        )
        return {t: counts for t, counts in cursor.fetchall() if t not in UNWATCHED_TABLES}


def changed_tables(before: dict[str, str], after: dict[str, str]) -> list[str]:
    return sorted(t for t in before.keys() | after.keys() if before.get(t) != after.get(t))
