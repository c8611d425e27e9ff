"""The job list's filters: family, task, queue, state, requester, time, attention.

Each filter is one indexed condition on the jobs table (task_name, status, date_created on
django-celery-results' table; queue and requester on Job, joined by task id), so the list
stays a range scan however many million jobs are kept (migrations 0006 and 0007). The
choices come from code (the task registry, the queues, the families) or a small table
(staff who asked for a job), never from a DISTINCT over the jobs.
"""

from __future__ import annotations

import functools
from datetime import timedelta
from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from workers import display
from workers.families import job_viewable, viewable_families
from workers.job_registry import canonical_name, task_names
from workers.models import JOB_FAMILY_SLUGS, Job, RequesterKind
from workers.queues import QUEUES


@functools.cache
def _task_registry() -> Any:
    # Importing every app's tasks module runs Django's system checks (Celery's fixup): once.
    from workers.celery import app

    app.loader.import_default_modules()
    return app.tasks


def known_task_names() -> list[str]:
    """Every task this code base defines (Celery's own excluded), from the registry."""
    return sorted(name for name in _task_registry() if not name.startswith("celery."))


def registered_task(task_name: str) -> Any:
    """The task object of that name (its current name's, for a former name: a retry runs
    under the current one), or None if this code base has no such task."""
    registry = _task_registry()
    return registry.get(canonical_name(task_name)) or registry.get(task_name)


def family_slug(task_name: str | None) -> str:
    label = display.job_family(task_name)
    return next((slug for slug, name in JOB_FAMILY_SLUGS if name == label), "other")


def task_names_of_family(slug: str) -> list[str]:
    return [name for name in known_task_names() if family_slug(name) == slug]


def jobs_where(*conditions: Any, **lookups: Any) -> Any:
    """Jobs whose Job row matches: one hashed semi-join on task_id (the matching Job rows
    are few for every use here), not a subquery per listed row."""
    return Q(task_id__in=Job.objects.filter(*conditions, **lookups).values("task_id"))


def retried_condition() -> Any:
    """Jobs some job retries. Two small sets, each hashed once by PostgreSQL; a self-join
    in one subquery is estimated as large and re-run for every listed row instead."""
    retried_ids = Job.objects.filter(retry_of__isnull=False).values("retry_of_id")
    return jobs_where(pk__in=retried_ids)


def discarded_condition() -> Any:
    return jobs_where(discarded_at__isnull=False)


class FamilyFilter(admin.SimpleListFilter):
    title = "family"
    parameter_name = "family"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Only the families whose jobs this person may see: another would list nothing.
        families = viewable_families(request.user)
        if families is None:
            return list(JOB_FAMILY_SLUGS)
        names = {family.name for family in families}
        return [(slug, label) for slug, label in JOB_FAMILY_SLUGS if label in names]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        slug = self.value()
        if not slug:
            return queryset
        if slug == "other":
            return queryset.exclude(task_name__in=known_task_names())
        return queryset.filter(task_name__in=task_names_of_family(slug))


class TaskFilter(admin.SimpleListFilter):
    title = "task"
    parameter_name = "task"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # A task once, by its current name; its rows under former names are listed with it.
        # Only the tasks whose jobs this person may see.
        current = [
            name
            for name in known_task_names()
            if canonical_name(name) == name and job_viewable(request.user, name)
        ]
        return [(name, display.task_short_name(name)) for name in current]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(task_name__in=task_names(value)) if value else queryset


class QueueFilter(admin.SimpleListFilter):
    title = "queue"
    parameter_name = "queue"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(name, name) for name in QUEUES]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(jobs_where(queue=self.value())) if self.value() else queryset


class StateFilter(admin.SimpleListFilter):
    """Celery's states, from code: Django's own field filter asks the table for its DISTINCT
    values, a full scan of a large one. Same parameter, so older links keep working."""

    title = "state"
    parameter_name = "status__exact"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(state, display.state_label(state)) for state in display.STATE_LABELS]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(status=self.value()) if self.value() else queryset


class RequesterFilter(admin.SimpleListFilter):
    """A person (staff member) by name, or every job a kind of requester started."""

    title = "requested by"
    parameter_name = "requester"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        # Imported here: selectors imports workers.operations, which imports this module
        # (ops_metrics, job_actions).
        from workers.selectors import task_results_viewable

        # Only people who asked for a job: a name that can only find nothing is noise. One
        # probe of the (requester_label, created_at) index per staff member, not a DISTINCT
        # over the jobs. And only for jobs this person may see, as the family and task
        # choices: the name of someone who started only another family's jobs said that
        # they had, and listed nothing.
        asked = task_results_viewable(
            Job.objects.filter(
                requester_kind=RequesterKind.USER, requester_label=OuterRef("username")
            ),
            user=request.user,
        )
        people = (
            get_user_model()
            .objects.filter(Exists(asked), is_staff=True)
            .order_by("username")
            .values_list("username", flat=True)[:200]
        )
        kinds = [(f"kind:{k.value}", f"any {k.label.lower()}") for k in RequesterKind]
        return [*((f"user:{name}", name) for name in people), *kinds]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value() or ""
        kind, _, label = value.partition(":")
        if kind == "user" and label:
            return queryset.filter(
                jobs_where(requester_kind=RequesterKind.USER, requester_label=label)
            )
        if kind == "kind" and label:
            return queryset.filter(jobs_where(requester_kind=label))
        return queryset


CREATED_RANGES = {
    "1h": ("last hour", timedelta(hours=1), True),
    "24h": ("last 24 hours", timedelta(days=1), True),
    "7d": ("last 7 days", timedelta(days=7), True),
    "30d": ("last 30 days", timedelta(days=30), True),
    "older-7d": ("more than 7 days ago", timedelta(days=7), False),
    "older-30d": ("more than 30 days ago", timedelta(days=30), False),
}


class CreatedFilter(admin.SimpleListFilter):
    title = "queued"
    parameter_name = "created"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(key, label) for key, (label, _, _) in CREATED_RANGES.items()]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        chosen = CREATED_RANGES.get(self.value() or "")
        if chosen is None:
            return queryset
        _, span, within = chosen
        cutoff = timezone.now() - span
        if within:
            return queryset.filter(date_created__gte=cutoff)
        return queryset.filter(date_created__lt=cutoff)


class AttentionFilter(admin.SimpleListFilter):
    """What a person did about a failed job: nothing yet, retried it, or discarded it."""

    title = "follow-up"
    parameter_name = "followup"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("open", "failed, not retried or discarded"),
            ("retried", "retried"),
            ("discarded", "discarded"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        if value == "retried":
            return queryset.filter(retried_condition())
        if value == "discarded":
            return queryset.filter(discarded_condition())
        if value == "open":
            return (
                queryset.filter(status__in=("FAILURE", "REVOKED"))
                .exclude(retried_condition())
                .exclude(discarded_condition())
            )
        return queryset


JOB_LIST_FILTERS = (
    FamilyFilter,
    TaskFilter,
    QueueFilter,
    StateFilter,
    RequesterFilter,
    CreatedFilter,
    AttentionFilter,
)
