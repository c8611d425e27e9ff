"""The worker side of Django's Tasks API on opsqueue (workers/tasks_backend.py): one Celery
task per Django task, what runs it, and the job log a task writes through `get_job_log()`.

A Django task runs once per job: a late redelivery of a finished job, or one whose record
expired, is not run again. While it runs, jobs it enqueues name it as their requester.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol

from celery import Task as CeleryTask
from celery import states
from celery.exceptions import Ignore
from django.utils import timezone
from django.utils.module_loading import import_string

from workers.enqueue import Requester
from workers.joblog import JobLogWriter
from workers.queues import QUEUES
from workers.requesters import requester_scope
from workers.tasks_api import (
    BaseTaskBackend,
    Task,
    TaskContext,
    TaskResultDoesNotExist,
    TaskResultStatus,
    normalize_json,
    task_signals,
)

logger = logging.getLogger(__name__)

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
        name=name,
        bind=True,
        shared=False,
        lazy=False,
        track_started=False,
        marks_started_itself=True,
        **limits,
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
