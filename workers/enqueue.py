"""Starting jobs: the one path domain code uses to put work on a queue.

`job_enqueue` is called inside the caller's transaction. The message is published only after
that transaction commits, so a rolled-back request enqueues nothing and a worker never sees
an id whose row is not yet visible. Just before publishing, the job is recorded as a PENDING
`TaskResult` with a `Job` row saying who asked, so the admin shows it at once. If the broker
cannot be reached, those records are removed again, the caller's `on_broker_error` undoes its
domain row, and `BrokerUnavailable` reaches the caller with a message fit for the admin.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from celery import Task, states
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django_celery_results.models import TaskResult
from kombu.exceptions import KombuError, OperationalError

from workers.models import Job, JobLogChunk, RequesterKind
from workers.queues import queue_for_task

logger = logging.getLogger(__name__)

REQUESTER_HEADER = "opsqueue_requester"

# Publishing gives up quickly: a person is waiting on the other end of the request.
PUBLISH_RETRY_POLICY = {"max_retries": 1, "interval_start": 0, "interval_step": 0.5}
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OperationalError,
    KombuError,
    BotoCoreError,
    ClientError,
    OSError,
)


class BrokerUnavailable(Exception):
    """The job could not be queued; nothing was recorded."""


@dataclass(frozen=True)
class Requester:
    kind: RequesterKind
    label: str
    user_id: int | None = None

    @classmethod
    def for_user(cls, user: AbstractBaseUser | AnonymousUser) -> Requester:
        if not user.is_authenticated:
            raise ValueError("an anonymous user cannot request a job")
        return cls(RequesterKind.USER, user.get_username(), user.pk)

    @classmethod
    def cli(cls, command: str) -> Requester:
        return cls(RequesterKind.CLI, command)

    @classmethod
    def schedule(cls, name: str) -> Requester:
        return cls(RequesterKind.SCHEDULE, name)

    @classmethod
    def system(cls, what: str) -> Requester:
        return cls(RequesterKind.SYSTEM, what)

    def as_header(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "label": self.label, "user_id": self.user_id}


def job_enqueue(
    task: Task,
    *,
    requester: Requester,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    on_broker_error: Callable[[], object] | None = None,
    audit_object: Any = None,
    **options: Any,
) -> str:
    """Queue `task` to run after the current transaction commits; return its task id.

    `on_broker_error` undoes the caller's domain writes if publishing fails (they have been
    committed by then). `audit_object` is the domain object the admin LogEntry points at
    (the Job row by default); an entry is written only for user-requested jobs.
    """
    task_id = str(uuid.uuid4())

    def publish() -> None:
        try:
            job_publish(
                task, task_id=task_id, requester=requester, args=args, kwargs=kwargs, **options
            )
        except BrokerUnavailable:
            if on_broker_error is not None:
                with transaction.atomic():
                    on_broker_error()
            raise
        if requester.kind == RequesterKind.USER and requester.user_id is not None:
            _audit(requester, task_id=task_id, task_name=task.name, audit_object=audit_object)

    transaction.on_commit(publish, robust=False)
    return task_id


def job_publish(
    task: Task,
    *,
    task_id: str,
    requester: Requester,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Record the job as PENDING, publish it now, and un-record it if publishing fails."""
    kwargs = kwargs or {}
    queue = options.get("queue") or queue_for_task(task.name)
    job_record_pending(
        task_id=task_id,
        task_name=task.name,
        queue=queue,
        requester=requester,
        args=args,
        kwargs=kwargs,
    )
    headers = {**options.pop("headers", {}), REQUESTER_HEADER: requester.as_header()}
    try:
        task.apply_async(
            args=list(args),
            kwargs=kwargs,
            task_id=task_id,
            headers=headers,
            retry=True,
            retry_policy=PUBLISH_RETRY_POLICY,
            **options,
        )
    except BROKER_ERRORS as exc:
        logger.warning("could not publish %s [%s]: %r", task.name, task_id, exc)
        job_forget(task_id=task_id)
        raise BrokerUnavailable(
            f"The job queue is unreachable, so {task.name} was not queued "
            f"({exc.__class__.__name__}). Nothing was changed; try again once the broker is back."
        ) from exc


def job_record_pending(
    *,
    task_id: str,
    task_name: str,
    queue: str,
    requester: Requester,
    args: Sequence[Any],
    kwargs: dict[str, Any],
) -> None:
    with transaction.atomic():
        Job.objects.create(
            task_id=task_id,
            task_name=task_name,
            queue=queue,
            requester_kind=requester.kind,
            requester_label=requester.label,
            requested_by_id=requester.user_id,
        )
        TaskResult.objects.create(
            task_id=task_id,
            task_name=task_name,
            task_args=json.dumps(list(args)),
            task_kwargs=json.dumps(kwargs),
            status=states.PENDING,
            content_type="application/json",
            content_encoding="utf-8",
            periodic_task_name=requester.label
            if requester.kind == RequesterKind.SCHEDULE
            else None,
        )


def job_forget(*, task_id: str) -> None:
    """Remove every record of a job that never reached the broker."""
    with transaction.atomic():
        TaskResult.objects.filter(task_id=task_id).delete()
        JobLogChunk.objects.filter(task_id=task_id).delete()
        Job.objects.filter(task_id=task_id).delete()


def _audit(requester: Requester, *, task_id: str, task_name: str, audit_object: Any) -> None:
    target = audit_object if audit_object is not None else Job.objects.get(task_id=task_id)
    assert requester.user_id is not None
    LogEntry.objects.log_actions(
        user_id=requester.user_id,
        queryset=[target],
        action_flag=ADDITION,
        change_message=f"Queued job {task_name} [{task_id}]",
        single_object=True,
    )
