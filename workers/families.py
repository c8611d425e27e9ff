"""Job families: which task belongs to which family, and the permissions that go with it.

One rule for every job: the family's view permission to look at a job (its page, its log,
its line in the job list), the family's operate permission to start one from anywhere that
is not the family's own page (a schedule's "Run" in the admin). A task no family claims is
for superusers only. Pure: permission names only, checked through `user.has_perm`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from workers.job_registry import canonical_name, declared_specs, task_name_lookup, task_names

# To reach any job page at all: the jobs admin's own view permission.
VIEW_JOBS = "django_celery_results.view_taskresult"


@dataclass(frozen=True)
class Family:
    name: str
    # Task name prefixes (a module path with its dot, or a whole task name).
    prefixes: tuple[str, ...]
    view_permission: str | None  # None: superusers only
    operate_permission: str | None  # None: superusers only


# First match wins: the diagnostic task before the rest of workers.*.
FAMILIES = (
    Family(
        "Diagnostic",
        ("workers.tasks.diagnostic_run_execute",),
        "workers.view_diagnosticrun",
        "workers.run_diagnostic",
    ),
    Family(
        "Courses",
        ("media_pipeline.", "courses."),
        "courses.view_course",
        "courses.regenerate_cover_variants",
    ),
    Family(
        "Terraform",
        ("infra_tasks.terraform.",),
        "terraform.view_terraformrun",
        "terraform.plan_terraformworkspace",
    ),
    Family(
        "Databases",
        ("infra_tasks.rds.",),
        "rds.view_databaseaction",
        "rds.operate_manageddatabase",
    ),
    Family(
        "Releases",
        ("infra_tasks.releases.",),
        "releases.view_release",
        "releases.run_release",
    ),
    Family("Infrastructure", ("infra_tasks.dashboard.",), "dashboard.view_dashboard", None),
    # Housekeeping (outbox relay, job cleanup, queue depths): what the operations page shows.
    Family("System", ("workers.", "celery."), "workers.view_operations", None),
)


# Beat's frequent bookkeeping (every 30 s to a few minutes): listed with every job, but left out
# of the Jobs home, where they would push the jobs people started off the page.
HOUSEKEEPING_TASKS = (
    "workers.tasks.job_republish_unsent",
    "workers.tasks.jobs_mark_lost",
    "workers.tasks.queue_depths_record",
    "workers.tasks.job_records_cleanup",
    "infra_tasks.terraform.tasks.runs_mark_lost",
    "infra_tasks.dashboard.tasks.ecs_services_refresh",
    "media_pipeline.tasks.retired_cover_files_delete",
    # Every 5 minutes; a database it puts back is a database action of its own, shown.
    "infra_tasks.rds.tasks.databases_enforce",
)


def family_for_task(task_name: str | None) -> Family | None:
    """The family of a task, by its current name: a row written under a former name
    belongs where the task is now."""
    return _family_by_prefix(canonical_name(task_name or ""))


def _family_by_prefix(name: str) -> Family | None:
    for family in FAMILIES:
        if any(name.startswith(prefix) for prefix in family.prefixes):
            return family
    return None


def _has(user: Any, permission: str | None) -> bool:
    if not (user.is_active and user.is_staff):
        return False
    if user.is_superuser:
        return True
    return permission is not None and bool(user.has_perm(permission))


def jobs_viewable(user: Any) -> bool:
    """May `user` look at jobs at all (the job list, of the families they may view)?"""
    return _has(user, VIEW_JOBS)


def job_viewable(user: Any, task_name: str | None) -> bool:
    """May `user` open this job's page and read its log?"""
    family = family_for_task(task_name)
    return _has(user, VIEW_JOBS) and _has(user, family.view_permission if family else None)


# Tasks whose start needs, besides their family's operate permission, the permission their
# own page asks for: a schedule, Run now or a dead letter's redrive is no way around it.
TASK_START_PERMISSIONS = {
    "infra_tasks.terraform.tasks.run_apply_execute": "terraform.apply_terraformworkspace",
    "infra_tasks.terraform.tasks.run_state_unlock_execute": (
        "terraform.force_unlock_terraformworkspace"
    ),
    "courses.tasks.course_outline_report": "courses.report_course_outline",
}


def job_startable(user: Any, task_name: str | None) -> bool:
    """May `user` start this task outside its family's own pages (e.g. a schedule's Run)?"""
    family = family_for_task(task_name)
    own = task_name_lookup(TASK_START_PERMISSIONS, task_name)
    return _has(user, family.operate_permission if family else None) and (
        own is None or _has(user, own)
    )


def viewable_families(user: Any) -> list[Family] | None:
    """The families whose jobs `user` may see; None means every job (a superuser)."""
    if not _has(user, VIEW_JOBS):
        return []
    if user.is_superuser:
        return None
    return [f for f in FAMILIES if f.view_permission and user.has_perm(f.view_permission)]


def housekeeping_task_names() -> tuple[str, ...]:
    """HOUSEKEEPING_TASKS with their former names, for a query on stored rows."""
    names = (name for task in HOUSEKEEPING_TASKS for name in (task, *task_names(task)))
    return tuple(dict.fromkeys(names))


def renamed_into_and_out_of(family: Family) -> tuple[list[str], list[str]]:
    """Former task names the prefix match places wrongly for `family`: those that belong
    to it now (to add to a prefix query) and those its prefixes claim but that belong
    elsewhere now (to leave out)."""
    into: list[str] = []
    out_of: list[str] = []
    for spec in declared_specs():
        now = _family_by_prefix(spec.name)
        for old in spec.old_names:
            then = _family_by_prefix(old)
            if then is now:
                continue
            if now is family:
                into.append(old)
            elif then is family:
                out_of.append(old)
    return into, out_of


def task_prefixes_excluded_before(family: Family) -> tuple[str, ...]:
    """Prefixes of the families listed before `family`: a name they claim is not its."""
    earlier: list[str] = []
    for other in FAMILIES:
        if other is family:
            break
        earlier.extend(other.prefixes)
    return tuple(earlier)
