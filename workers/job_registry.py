"""The job registry: every task's name, queue, limits and former names, declared once.

Each app declares its jobs in `<app>/jobs.py` (no Celery, no services imported there):

    RUN_PLAN_EXECUTE = job_spec(
        "infra_tasks.terraform.tasks.run_plan_execute",
        queue="infra",
        old_names=("infra_tasks.terraform.tasks.terraform_plan",),
    )

`<app>/tasks.py` defines the task with `@job_task(RUN_PLAN_EXECUTE)`, named after the
service it calls; services enqueue with `job_enqueue(RUN_PLAN_EXECUTE, ...)`. So the import
rule holds without circles: tasks import services, services import the app's `jobs` module
and `workers`, never `tasks` (tests/project/test_import_rule.py checks it).

A renamed task stays registered under its old names, so messages already queued and
PeriodicTask rows written before the rename still run; `canonical_name` maps an old name to
the current one for the admin's bookkeeping (retry rules, job subjects).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module
from typing import Any, TypeVar

from celery import Task, shared_task

DEFAULT_QUEUE = "default"

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class JobSpec:
    name: str  # the Celery task name: "<app>.tasks.<service it calls>"
    queue: str = DEFAULT_QUEUE
    # None: the queue's limits (workers/queues.py). Set only where a task needs its own.
    time_limit: int | None = None
    soft_time_limit: int | None = None
    old_names: tuple[str, ...] = ()

    @property
    def module(self) -> str:
        return self.name.rsplit(".", 1)[0]

    def task(self) -> Task:
        """The registered Celery task (its module is imported on first use)."""
        from workers.celery import app

        found = app.tasks.get(self.name)
        if found is None:
            import_module(self.module)
            found = app.tasks[self.name]
        return found


_SPECS: dict[str, JobSpec] = {}


def job_spec(
    name: str,
    *,
    queue: str = DEFAULT_QUEUE,
    time_limit: int | None = None,
    soft_time_limit: int | None = None,
    old_names: tuple[str, ...] = (),
) -> JobSpec:
    """Declare a job; its name and old names must be new to the registry."""
    spec = JobSpec(name, queue, time_limit, soft_time_limit, old_names)
    for each in (name, *old_names):
        known = _SPECS.get(each)
        if known is not None and known != spec:
            raise ValueError(f"task name {each} is declared twice")
        _SPECS[each] = spec
    return spec


def spec_for(task_name: str) -> JobSpec | None:
    """The declaration of a task, by its current or a former name."""
    return _SPECS.get(task_name)


def canonical_name(task_name: str) -> str:
    spec = _SPECS.get(task_name)
    return spec.name if spec is not None else task_name


def declared_specs() -> list[JobSpec]:
    return sorted(set(_SPECS.values()), key=lambda spec: spec.name)


def job_task(spec: JobSpec, *, bind: bool = True, **options: Any) -> Callable[[F], Task]:
    """`@shared_task` for a declared job: its name, queue and limits come from `spec`, and
    the same function is registered under each old name (a bound task then sees its own
    request, whichever name the message used)."""

    def decorate(func: F) -> Task:
        limits = {
            key: value
            for key, value in (
                ("time_limit", spec.time_limit),
                ("soft_time_limit", spec.soft_time_limit),
            )
            if value is not None
        }
        # The queue is not a task attribute (deprecated in Celery 5): workers/queues.py's
        # router reads it from the spec, for messages sent under any of the names.
        for old in spec.old_names:
            shared_task(bind=bind, name=old, **limits, **options)(func)
        return shared_task(bind=bind, name=spec.name, **limits, **options)(func)

    return decorate
