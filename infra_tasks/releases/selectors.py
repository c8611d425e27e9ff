"""Reads: the pending migration plan, its backward-compatibility findings, release records."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.loader import MigrationLoader
from django.db.models import Field
from django.urls import reverse

from infra_tasks.releases.compat import FieldBefore, Finding, backward_incompatible
from infra_tasks.releases.models import Release
from workers.subjects import JobSubject


@dataclass(frozen=True)
class PlanStep:
    app: str
    name: str
    backwards: bool

    @property
    def label(self) -> str:
        return f"{self.app}.{self.name}"

    def as_dict(self) -> dict[str, str]:
        return {
            "app": self.app,
            "name": self.name,
            "direction": "backward" if self.backwards else "forward",
        }

    def __str__(self) -> str:
        return f"{'unapply' if self.backwards else 'apply'} {self.label}"


def migration_plan_pending(*, connection: BaseDatabaseWrapper | None = None) -> list[PlanStep]:
    """What `migrate` with no arguments would do now: every app to its latest migration."""
    executor = MigrationExecutor(connection or connections[DEFAULT_DB_ALIAS])
    targets = executor.loader.graph.leaf_nodes()
    return [
        PlanStep(migration.app_label, migration.name, backwards)
        for migration, backwards in executor.migration_plan(targets)
    ]


def migration_plan_findings(
    plan: list[PlanStep], *, connection: BaseDatabaseWrapper | None = None
) -> list[Finding]:
    """Backward-incompatible operations in the plan, for apps the running code already uses.

    An app with no migration applied yet is new to this database: no running code reads its
    tables, so nothing in its plan can break old code (this is what lets a fresh database,
    Django's own apps included, be created through the same gate).
    """
    loader = MigrationLoader(connection or connections[DEFAULT_DB_ALIAS])
    apps_in_use = {app for app, _ in loader.applied_migrations or {}}
    findings: list[Finding] = []
    for step in plan:
        if step.backwards or step.app not in apps_in_use:
            continue
        key = (step.app, step.name)
        findings += backward_incompatible(
            step.label,
            loader.graph.nodes[key].operations,
            field_before=fields_before(loader, key),
        )
    return findings


def fields_before(loader: MigrationLoader, key: tuple[str, str]) -> FieldBefore:
    """Look up a field as it was just before migration `key` (the state is built on demand:
    only AlterField needs it, and building it replays the app's whole history)."""

    def field_before(model_name: str, field_name: str) -> Field | None:
        state = loader.project_state(key, at_end=False)
        model = state.models.get((key[0], model_name.lower()))
        return model.fields.get(field_name) if model else None

    return field_before


# Apps whose tables a release record (with its job, result and log) is written to.
RECORD_APPS = frozenset({"releases", "workers", "django_celery_results", "auth", "contenttypes"})


def plan_touches_records(plan: list[PlanStep]) -> bool:
    """Whether the plan changes the tables release records live in.

    Until such a plan is applied the records cannot be written (a fresh database has no
    tables at all; a release of this app may add a column its own model already reads).
    """
    return any(step.app in RECORD_APPS for step in plan)


def release_get(*, version: str) -> Release | None:
    return Release.objects.filter(version=version).first()


def release_job_subject(task_id: str) -> JobSubject | None:
    """The release a migration job runs, for the job's page."""
    release = Release.objects.filter(task_id=task_id).first()
    if release is None:
        return None
    return JobSubject(
        label=f"Release {release.version}",
        url=reverse("admin:releases_release_change", args=[release.pk]),
        state=release.get_state_display(),
        message=release.error or release.summary,
    )
