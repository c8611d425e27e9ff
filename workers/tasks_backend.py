"""Django's Tasks API on opsqueue: `@task` functions run as opsqueue jobs.

    TASKS = {"default": {"BACKEND": "workers.tasks_backend.OpsqueueBackend",
                         "QUEUES": ["default", "media"]}}

`my_task.enqueue(...)` goes through `job_enqueue` like every opsqueue job: a PENDING record
with its requester (workers/requesters.py) in the caller's transaction, the outbox relay
after commit, a Celery worker on the task's queue over SQS. Each `@task` is registered as a
Celery task named by its module path, so the Jobs page, Flower and django-celery-results
show it by its own name. Inside the task, `get_job_log()` writes the job's log. The worker
side (the Celery task of each Django task, what runs it) is workers/tasks_backend_worker.py.

Results are read from the stored records (TaskResult, Job), so `get_result(id)` and
`result.refresh()` work from any process. `run_after` becomes SQS's delay or a clocked beat
entry (workers/enqueue.py); priority cannot be honoured on SQS and is refused.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
from collections.abc import Iterable
from importlib import import_module
from typing import Any, TypeVar

from celery import states
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import module_has_submodule
from django_celery_results.models import TaskResult as StoredResult
from typing_extensions import ParamSpec

from workers.enqueue import job_enqueue
from workers.models import Job
from workers.queues import QUEUES
from workers.requesters import current_requester
from workers.tasks_api import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_signals,
)
from workers.tasks_backend_worker import (
    JobLog,
    _registered,
    celery_task_named,
    celery_task_register,
    django_task_named,
    get_job_log,
)

logger = logging.getLogger(__name__)

# What tasks modules and callers import from here (the backend's public face).
__all__ = [
    "JobLog",
    "OpsqueueBackend",
    "celery_task_named",
    "celery_task_register",
    "django_task_named",
    "get_job_log",
]

T = TypeVar("T")
P = ParamSpec("P")

# Django's task priority default; anything else would need a broker that orders by it.
DEFAULT_PRIORITY = 0

STATUS_FROM_CELERY = {
    states.PENDING: TaskResultStatus.READY,
    states.RECEIVED: TaskResultStatus.READY,
    states.RETRY: TaskResultStatus.READY,
    states.STARTED: TaskResultStatus.RUNNING,
    states.SUCCESS: TaskResultStatus.SUCCESSFUL,
    states.FAILURE: TaskResultStatus.FAILED,
    states.REVOKED: TaskResultStatus.FAILED,
}


class OpsqueueBackend(BaseTaskBackend):
    supports_defer = True
    supports_async_task = True  # the worker runs a coroutine to completion (Task.call)
    supports_get_result = True
    supports_priority = False

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        if "QUEUES" not in params:
            self.queues = set(QUEUES)

    def validate_task(self, task: Task) -> None:
        # Clearer words than the base class's for the two refusals people will meet.
        if task.priority != DEFAULT_PRIORITY:
            raise InvalidTaskError(
                f"Task {task.module_path}: opsqueue cannot honour priority={task.priority} "
                "(SQS delivers a queue's messages in no priority order). Give urgent work "
                "its own queue with queue_name= instead."
            )
        if self.queues and task.queue_name not in self.queues:
            raise InvalidTaskError(
                f"Task {task.module_path}: queue {task.queue_name!r} is not one of this "
                f"backend's queues ({', '.join(sorted(self.queues))})."
            )
        super().validate_task(task)
        celery_task_register(task)

    def enqueue(
        self,
        task: Task[P, T],
        args: P.args,  # type: ignore[valid-type]
        kwargs: P.kwargs,  # type: ignore[valid-type]
    ) -> TaskResult[T]:
        self.validate_task(task)
        json_args, json_kwargs = _json_arguments(task, args, kwargs)
        spec = QUEUES[task.queue_name]
        task_id = job_enqueue(
            celery_task_register(task),
            requester=current_requester(),
            args=json_args,
            kwargs=json_kwargs,
            queue=task.queue_name,
            run_after=task.run_after,
            options={
                # Limits of the queue the task runs on, not of the one its name routes to.
                "time_limit": spec.time_limit,
                "soft_time_limit": spec.soft_time_limit,
                # Stored by the worker's result backend as the job's arguments: the whole
                # repr (Celery's own would be cut at 1 KiB), read back by get_result.
                "argsrepr": repr(json_args),
                "kwargsrepr": repr(json_kwargs),
            },
        )
        result: TaskResult[T] = TaskResult(
            task=task,
            id=task_id,
            status=TaskResultStatus.READY,
            enqueued_at=timezone.now(),
            started_at=None,
            finished_at=None,
            last_attempted_at=None,
            args=json_args,
            kwargs=json_kwargs,
            backend=self.alias,
            errors=[],
            worker_ids=[],
        )
        transaction.on_commit(
            lambda: task_signals.task_enqueued.send(type(self), task_result=result)
        )
        return result

    def get_result(self, result_id: str) -> TaskResult:
        stored = StoredResult.objects.filter(task_id=result_id).first()
        if stored is None:
            raise TaskResultDoesNotExist(result_id)
        task = django_task_named(stored.task_name or "")
        if task is None:
            raise TaskResultDoesNotExist(f"{result_id} is not a job of a Django task")
        job = Job.objects.filter(task_id=result_id).first()
        return self._result_from_records(task, stored, job)

    def check(self, **kwargs: Any) -> Iterable[checks.CheckMessage]:
        yield from super().check(**kwargs)
        for queue in sorted(self.queues - set(QUEUES)):
            yield checks.Error(
                f"TASKS[{self.alias!r}] lists queue {queue!r}, which opsqueue does not have: "
                "no Celery route or SQS queue leads there.",
                hint=f"Use one of {', '.join(QUEUES)} (workers/queues.py).",
                id="opsqueue.E101",
            )
        worker_modules = _modules_workers_import()
        for task in _tasks_of_backend(self.alias):
            module = task.func.__module__
            if module not in worker_modules:
                yield checks.Error(
                    f"Task {task.module_path} is in {module}, which workers do not import: "
                    "Celery would refuse its jobs as an unregistered task.",
                    hint="Define tasks in an installed app's tasks.py, or add the module to "
                    "CELERY_IMPORTS.",
                    id="opsqueue.E102",
                )

    def _result_from_records(self, task: Task, stored: StoredResult, job: Job | None) -> TaskResult:
        status = STATUS_FROM_CELERY.get(stored.status, TaskResultStatus.READY)
        finished = status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED)
        if job is not None and job.queue != task.queue_name and job.queue in self.queues:
            task = dataclasses.replace(task, queue_name=job.queue)
        result: TaskResult = TaskResult(
            task=task,
            id=stored.task_id,
            status=status,
            enqueued_at=job.created_at if job is not None else stored.date_created,
            started_at=stored.date_started,
            finished_at=stored.date_done if finished else None,
            last_attempted_at=stored.date_started,
            args=_stored_arguments(stored.task_args, []),
            kwargs=_stored_arguments(stored.task_kwargs, {}),
            backend=self.alias,
            errors=_stored_errors(stored) if status == TaskResultStatus.FAILED else [],
            worker_ids=[stored.worker] if stored.worker else [],
        )
        if status == TaskResultStatus.SUCCESSFUL:
            object.__setattr__(result, "_return_value", json.loads(stored.result or "null"))
        return result


# --- stored records -----------------------------------------------------------------------


def _json_arguments(task: Task, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any]]:
    """The arguments as JSON values, or TypeError: a job's arguments travel in an SQS
    message and are stored as JSON."""
    try:
        json_args, json_kwargs = normalize_json(list(args)), normalize_json(dict(kwargs))
        json.dumps([json_args, json_kwargs], allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"Task {task.module_path}: arguments must be JSON values (str, int, float, bool, "
            f"None, lists and dicts of them): {exc}"
        ) from exc
    return json_args, json_kwargs


def _stored_arguments(stored: str | None, empty: Any) -> Any:
    """Arguments as stored: JSON from the enqueue path, then the JSON-encoded Python repr
    the worker's result backend writes (`argsrepr`)."""
    if not stored:
        return empty
    value = json.loads(stored)
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = ast.literal_eval(value)
    return list(value) if isinstance(empty, list) else dict(value)


def _stored_errors(stored: StoredResult) -> list[TaskError]:
    try:
        failure = json.loads(stored.result or "{}")
    except ValueError:
        failure = {}
    if not isinstance(failure, dict):
        failure = {}
    module = failure.get("exc_module") or "builtins"
    name = failure.get("exc_type") or "Exception"
    return [TaskError(exception_class_path=f"{module}.{name}", traceback=stored.traceback or "")]


# --- what the checks look at --------------------------------------------------------------


def _tasks_of_backend(alias: str) -> list[Task]:
    """Django tasks known to this process (their modules imported) that use `alias`."""
    # What a worker imports, imported here too (not through Celery's loader: its Django
    # fixup runs the system checks again from there).
    for config in apps.get_app_configs():
        if module_has_submodule(config.module, "tasks"):
            import_module(f"{config.name}.tasks")
    for module in _configured_imports():
        import_module(module)
    found = [django_task_named(name) for name in sorted(_registered)]
    return [task for task in found if task is not None and task.backend == alias]


def _modules_workers_import() -> set[str]:
    """Modules a worker imports at start: each installed app's tasks module (Celery's
    autodiscovery) and CELERY_IMPORTS / CELERY_INCLUDE."""
    return {f"{config.name}.tasks" for config in apps.get_app_configs()} | _configured_imports()


def _configured_imports() -> set[str]:
    return set(getattr(settings, "CELERY_IMPORTS", ()) or ()) | set(
        getattr(settings, "CELERY_INCLUDE", ()) or ()
    )
