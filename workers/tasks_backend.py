"""Django's Tasks API on opsqueue: `@task` functions run as opsqueue jobs.

    TASKS = {"default": {"BACKEND": "workers.tasks_backend.OpsqueueBackend",
                         "QUEUES": ["default", "media"]}}

`my_task.enqueue(...)` goes through `job_enqueue` like every opsqueue job: a PENDING record
with its requester (workers/requesters.py) in the caller's transaction, the outbox relay
after commit, a Celery worker on the task's queue over SQS. Each `@task` is registered as a
Celery task named by its module path, so the Jobs page, Flower and django-celery-results
show it by its own name. Inside the task, `get_job_log()` writes the job's log.

Results are read from the stored records (TaskResult, Job), so `get_result(id)` and
`result.refresh()` work from any process. `run_after` becomes SQS's delay or a clocked beat
entry (workers/enqueue.py); priority cannot be honoured on SQS and is refused.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from importlib import import_module
from typing import Any, Protocol, TypeVar

from celery import Task as CeleryTask
from celery import states
from celery.exceptions import Ignore
from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string, module_has_submodule
from django_celery_results.models import TaskResult as StoredResult
from typing_extensions import ParamSpec

from workers.enqueue import Requester, job_enqueue
from workers.joblog import JobLogWriter
from workers.models import Job
from workers.queues import QUEUES
from workers.requesters import current_requester, requester_scope
from workers.tasks_api import (
    BaseTaskBackend,
    InvalidTaskError,
    Task,
    TaskContext,
    TaskError,
    TaskResult,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_signals,
)

logger = logging.getLogger(__name__)

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

_job_log: ContextVar[JobLogWriter | None] = ContextVar("opsqueue_task_job_log", default=None)


class JobLog(Protocol):
    def line(self, text: str) -> None: ...
    def write(self, text: str) -> None: ...
    def set_progress(self, done: int, total: int) -> None: ...


def get_job_log() -> JobLog:
    """The log of the job running this task: `get_job_log().line("copied 3 files")`.

    On a worker, lines are redacted and stored in batches and the admin shows them live.
    Called outside a job (`my_task.call(...)` in a shell or a test) it writes to the Python
    log instead, so a task's function runs anywhere."""
    return _job_log.get() or _UNSTORED_LOG


class _PythonLog:
    def line(self, text: str) -> None:
        logger.info("(no job) %s", text)

    def write(self, text: str) -> None:
        for line in text.splitlines():
            self.line(line)

    def set_progress(self, done: int, total: int) -> None:
        logger.info("(no job) progress %s/%s", done, total)


_UNSTORED_LOG = _PythonLog()


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


# --- Celery side: one Celery task per Django task -----------------------------------------


# The Celery tasks registered for Django tasks in this process, by name.
_registered: dict[str, CeleryTask] = {}


def celery_task_register(task: Task) -> CeleryTask:
    """The Celery task that runs `task`, registered under its module path (once)."""
    from workers.celery import app

    name = task.module_path
    if name in _registered:
        return _registered[name]

    def run(self: CeleryTask, *args: Any, **kwargs: Any) -> Any:
        return _execute(self, name, list(args), kwargs)

    run.__name__ = task.func.__name__
    run.__doc__ = task.func.__doc__
    spec = QUEUES.get(task.queue_name)
    limits = (
        {"time_limit": spec.time_limit, "soft_time_limit": spec.soft_time_limit} if spec else {}
    )
    # Not shared and not lazy: registered on this app now, whether or not it is finalized.
    celery_task: CeleryTask = app.task(
        name=name, bind=True, shared=False, lazy=False, track_started=False, **limits
    )(run)
    _registered[name] = celery_task
    return celery_task


def celery_task_named(name: str) -> CeleryTask | None:
    """The Celery task of that name; a Django task's module is imported to register it."""
    from workers.celery import app

    task = app.tasks.get(name)
    if task is None and django_task_named(name) is not None:
        task = app.tasks.get(name)
    return task


def django_task_named(module_path: str) -> Task | None:
    try:
        found = import_string(module_path)
    except ImportError:
        return None
    return found if isinstance(found, Task) else None


def _execute(celery_task: CeleryTask, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
    task_id = celery_task.request.id
    task = django_task_named(name)
    if task is None:
        raise LookupError(f"{name} is not a Django task in this worker's code")
    backend = task.get_backend()
    try:
        result = backend.get_result(task_id)
    except TaskResultDoesNotExist:
        # Its record expired or was removed: nothing asks for this job any more.
        logger.warning("%s [%s]: no record of this job, not run", name, task_id)
        raise Ignore() from None
    if result.is_finished:
        # A late redelivery of a job that has run: it does not run twice, and its stored
        # outcome stays as it is.
        logger.info("%s [%s]: finished already (%s), not run again", name, task_id, result.status)
        raise Ignore()
    # Marked started here, after that look, not by Celery before the task (track_started
    # is off for these tasks): Celery's mark would hide a finished job's outcome.
    celery_task.backend.store_result(
        task_id,
        {"pid": os.getpid(), "hostname": celery_task.request.hostname},
        states.STARTED,
        request=celery_task.request,
    )
    result = backend.get_result(task_id)
    with (
        JobLogWriter(task_id) as log,
        _job_log_scope(log),
        # A job this task enqueues names this job as its requester.
        requester_scope(Requester.system(f"{name} [{task_id}]"[:255])),
    ):
        task_signals.task_started.send(type(backend), task_result=result)
        try:
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            value = normalize_json(value)
        except BaseException:
            _send_finished(backend, task_id)
            raise
    _send_finished(backend, task_id, value=value)
    return value


def _send_finished(backend: BaseTaskBackend, task_id: str, **outcome: Any) -> None:
    # Sent before Celery stores the outcome, so the result carries what is known here.
    result = backend.get_result(task_id)
    finished = dataclasses.replace(result, finished_at=timezone.now())
    object.__setattr__(
        finished,
        "status",
        TaskResultStatus.SUCCESSFUL if "value" in outcome else TaskResultStatus.FAILED,
    )
    object.__setattr__(finished, "_return_value", outcome.get("value"))
    task_signals.task_finished.send(type(backend), task_result=finished)


@contextmanager
def _job_log_scope(log: JobLogWriter) -> Iterator[JobLogWriter]:
    token = _job_log.set(log)
    try:
        yield log
    finally:
        _job_log.reset(token)


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
