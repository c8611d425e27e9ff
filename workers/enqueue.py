"""Starting jobs: the one path domain code uses to put work on a queue.

`job_enqueue` is called inside the caller's transaction. It refuses at once, with
`BrokerUnavailable`, if the broker is known to be unreachable — the caller's transaction
then rolls back and nothing is left behind. Otherwise it records the job in that same
transaction (a PENDING `TaskResult` and a `Job` row saying who asked, plus an admin
`LogEntry` for a person), so the admin shows it at once and a rolled-back request leaves no
trace. After commit the message goes to the outbox relay (workers/outbox.py), which
publishes it without making the request wait on SQS.

A job may be given `run_after`, the earliest time it may start. Up to SQS's longest message
delay away, the message is sent at once with that delay (`DelaySeconds`); further away, the
job stays recorded and a one-off clocked beat entry sends it when it comes due
(workers/deferred.py). Never a Celery countdown: a message held by a worker longer than the
queue's visibility timeout is delivered again and again (DESIGN: redelivery loop).
"""

from __future__ import annotations

import json
import logging
import traceback
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Task, states
from django.contrib.admin.models import ADDITION, LogEntry
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Model
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers.errors import ApplicationError
from workers.job_registry import JobSpec
from workers.models import Job, RequesterFields, RequesterKind
from workers.outbox import (
    MAX_SQS_DELAY_SECONDS,
    BrokerUnavailable,
    OutboundJob,
    broker_health,
    broker_unreachable,
    job_unsendable_record,
    publish_now,
    relay,
)
from workers.queues import QUEUES, queue_for_task
from workers.row_inserts import insert_rows

logger = logging.getLogger(__name__)

REQUESTER_HEADER = "opsqueue_requester"
# Celery's own message headers (protocol 2) and ours. Celery lets extra headers overwrite its
# own, and a worker runs the task its "task" header names: a schedule's headers (editable in
# the beat admin) must not choose another task, id or parent, or claim to be a deferred job.
RESERVED_HEADERS = frozenset(
    {
        "lang",
        "task",
        "id",
        "shadow",
        "eta",
        "expires",
        "group",
        "group_index",
        "retries",
        "timelimit",
        "root_id",
        "parent_id",
        "argsrepr",
        "kwargsrepr",
        "origin",
        "ignore_result",
        "replaced_task_nesting",
        "stamped_headers",
        "stamps",
        "compression",
        REQUESTER_HEADER,
        "opsqueue_deferred_job",
        "opsqueue_claim_recheck",
    }
)

__all__ = [
    "BrokerUnavailable",
    "JobArgumentsRefused",
    "JobQueueRefused",
    "JobRequest",
    "Requester",
    "job_arguments_check",
    "job_enqueue",
    "job_enqueue_many",
    "job_publish",
    "job_queue_check",
    "new_task_id",
]


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
    def of(cls, record: RequesterFields) -> Requester:
        """Who asked for a recorded job (a Job, a release, a terraform run, an action)."""
        return cls(
            RequesterKind(record.requester_kind), record.requester_label, record.requested_by_id
        )

    @classmethod
    def cli(cls, command: str) -> Requester:
        return cls(RequesterKind.CLI, command)

    @classmethod
    def schedule(cls, name: str) -> Requester:
        return cls(RequesterKind.SCHEDULE, name)

    @classmethod
    def system(cls, what: str) -> Requester:
        return cls(RequesterKind.SYSTEM, what)

    def as_fields(self) -> dict[str, Any]:
        """The RequesterFields of a record this requester asked for: `Model(**r.as_fields())`."""
        return {
            "requester_kind": self.kind,
            "requester_label": self.label,
            "requested_by_id": self.user_id,
        }

    def as_header(self) -> dict[str, Any]:
        return {"kind": str(self.kind), "label": self.label, "user_id": self.user_id}


class JobArgumentsRefused(ApplicationError):
    """The task does not take the arguments given (a schedule saved with wrong ones);
    nothing was recorded."""


class JobQueueRefused(ApplicationError):
    """The job names a queue that is not one of ours, or an exchange or routing key that
    is not its queue's own (a schedule saved with such names): no worker would receive it,
    so it would read Queued for good; nothing was recorded."""


# Every one of our queues is bound to Celery's default exchange under its own name
# (workers/queues.kombu_queues).
QUEUE_EXCHANGE = "default"


def job_route_problem(queue: str, exchange: Any, routing_key: Any) -> tuple[str, str] | None:
    """(field, why) if a message for `queue` names an exchange or routing key that is not
    the queue's own, else None. Celery prefers them to the queue's: on SQS a routing key
    under an exchange picks the queue, so `bogus` under `default` was sent nowhere (SQS
    took nothing and Celery said nothing), and the worker acknowledges a message through
    the queue its routing key names. The only values that make sense are the queue's own."""
    if exchange and exchange != QUEUE_EXCHANGE:
        return (
            "exchange",
            f"On SQS a job goes to its queue; leave the exchange empty (or “{QUEUE_EXCHANGE}”), "
            f"not “{exchange}”.",
        )
    if routing_key and routing_key != queue:
        return (
            "routing_key",
            f"On SQS a job goes to its queue; leave the routing key empty (or the queue's "
            f"name, “{queue}”), not “{routing_key}”.",
        )
    return None


def job_destination_problem(
    queue: Any, task_name: str, exchange: Any = None, routing_key: Any = None
) -> tuple[str, str] | None:
    """(field, why) if a job of `task_name` sent with these options would reach no worker,
    else None: a queue that is not one of ours (workers/queues.py; such a job reads Queued
    for good), or an exchange or routing key that is not its queue's own
    (`job_route_problem`). An empty queue means the task's own. Asked of every job made
    (`job_message`) and of every schedule (its admin form, and beat before it fires)."""
    name = getattr(queue, "name", queue)  # Celery also takes a kombu Queue
    if name and name not in QUEUES:
        return (
            "queue",
            f"No worker reads a queue named “{name}”. Leave it empty for the task's own "
            f"queue, or name one of: {', '.join(QUEUES)}.",
        )
    return job_route_problem(name or queue_for_task(task_name), exchange, routing_key)


def job_arguments_check(task: Task, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """Raise JobArgumentsRefused if `task` cannot be called with these arguments: such a job
    could never be sent (Celery checks them as it makes the message)."""
    if not task.typing:
        return
    try:
        task.__header__(*args, **kwargs)
    except TypeError as exc:
        raise JobArgumentsRefused(f"{task.name} does not take these arguments: {exc}.") from None


def job_enqueue(
    task: Task | JobSpec,
    *,
    requester: Requester,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    audit_object: Any = None,
    task_id: str | None = None,
    queue: str | None = None,
    run_after: datetime | None = None,
    options: Mapping[str, Any] | None = None,
    refuse_if_broker_down: bool = True,
) -> str:
    """Queue `task` to be sent once the current transaction commits; return its task id.

    `audit_object` is the domain object the admin LogEntry points at (by default the Job
    row just recorded, not looked up again); an entry is written only for jobs a person
    asked for. Pass `task_id` (from `new_task_id()`) to store it on a domain row created
    before the call. `run_after` (an aware datetime) is the earliest the job may start;
    `options` are further Celery message options (time limits, argument reprs).

    A follow-up job that must not undo the work that triggers it (the next run in a queue,
    started as the previous one finishes) passes `refuse_if_broker_down=False`: it is then
    recorded even while the broker is down, and sent once it is back.
    """
    if refuse_if_broker_down:
        broker_health.ensure_available()
    task = celery_task(task)
    job_arguments_check(task, args, kwargs or {})
    task_id = task_id or new_task_id()
    message_options = {**(options or {}), **({"queue": queue} if queue else {})}
    message = job_message(
        task, task_id, requester, args, kwargs or {}, message_options, run_after=run_after
    )
    if refuse_if_broker_down:
        broker_health.ensure_queue(message.options["queue"])
    job_record_pending(message, requester=requester, audit=True, audit_object=audit_object)
    if run_after is not None and seconds_until(run_after) > MAX_SQS_DELAY_SECONDS:
        from workers.deferred import deferred_job_schedule

        deferred_job_schedule(
            task_id=task_id,
            task_name=task.name,
            queue=message.options["queue"],
            run_after=run_after,
        )
    else:
        transaction.on_commit(lambda: relay.submit(message))
    return task_id


def seconds_until(moment: datetime) -> float:
    return (moment - timezone.now()).total_seconds()


@dataclass(frozen=True)
class JobRequest:
    """One job of a batch: `job_enqueue`'s arguments but the requester."""

    task: Task | JobSpec
    args: Sequence[Any] = ()
    kwargs: dict[str, Any] | None = None
    queue: str | None = None


def job_enqueue_many(requests: Sequence[JobRequest], *, requester: Requester) -> list[Job]:
    """`job_enqueue` for many jobs at once (a bulk retry): the same records, audit entries
    and after-commit sending, written with one INSERT per table instead of one per job, so
    a few hundred jobs fit in a short request. Returns the new Job rows, in order."""
    if not requests:
        return []
    broker_health.ensure_available()
    for r in requests:
        job_arguments_check(celery_task(r.task), r.args, r.kwargs or {})
    messages = [
        job_message(
            celery_task(r.task),
            new_task_id(),
            requester,
            r.args,
            r.kwargs or {},
            {"queue": r.queue} if r.queue else {},
        )
        for r in requests
    ]
    for queue in {message.options["queue"] for message in messages}:
        broker_health.ensure_queue(queue)
    with transaction.atomic(savepoint=False):
        jobs = Job.objects.bulk_create(
            [_job_row(message, requester) for message in messages], batch_size=500
        )
        TaskResult.objects.bulk_create(
            [_pending_result(message, requester) for message in messages], batch_size=500
        )
        if requester.kind == RequesterKind.USER and requester.user_id is not None:
            LogEntry.objects.bulk_create(
                [
                    _queued_log_entry(requester, message, job)
                    for message, job in zip(messages, jobs, strict=True)
                ]
            )
    transaction.on_commit(lambda: relay.submit(*messages))
    return jobs


def job_queue_check() -> None:
    """Raise BrokerUnavailable now if jobs cannot be queued: for services that would
    otherwise do expensive or external work (store a file) before `job_enqueue` refuses."""
    broker_health.ensure_available()


def celery_task(task: Task | JobSpec) -> Task:
    """Services name their jobs by spec (they never import tasks); the outbox needs the task."""
    return task.task() if isinstance(task, JobSpec) else task


def new_task_id() -> str:
    return str(uuid.uuid4())


def job_publish(
    task: Task | JobSpec,
    *,
    task_id: str,
    requester: Requester,
    args: Sequence[Any] = (),
    kwargs: dict[str, Any] | None = None,
    **options: Any,
) -> None:
    """Record and publish now, waiting for the broker (beat, which has no request to keep
    fast). If the broker is unreachable the job stays recorded as unsent, and
    BrokerUnavailable is raised: nobody is waiting on a schedule's firing to be told to try
    again, so it is not dropped (a nightly stop would be lost) but left to the outbox
    sweeper (`job_republish_unsent`), which sends it once the broker is back. A job whose
    message cannot be made at all ends FAILURE saying why, and that error is raised."""
    task = celery_task(task)
    message = job_message(task, task_id, requester, args, kwargs or {}, options)
    job_record_pending(message, requester=requester)
    try:
        publish_now(message)
    except Exception as exc:
        if broker_unreachable(exc):
            logger.warning("could not publish %s [%s]: %r", task.name, task_id, exc)
            raise BrokerUnavailable(
                f"The job queue is unreachable ({exc.__class__.__name__}), so {task.name} "
                f"[{task_id}] is recorded and waits to be sent once it is back."
            ) from exc
        # The job's own fault (arguments that do not fit its task): it ends failed, saying
        # why, instead of waiting to be sent, which would fail the same way every time.
        job_unsendable_record(
            task_id=task_id,
            reason=f"{exc.__class__.__name__}: {exc}",
            trace=traceback.format_exc(),
        )
        Job.objects.filter(task_id=task_id).update(sent_at=timezone.now())
        raise
    Job.objects.filter(task_id=task_id).update(sent_at=timezone.now())


def job_message(
    task: Task,
    task_id: str,
    requester: Requester,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    options: Mapping[str, Any],
    *,
    run_after: datetime | None = None,
) -> OutboundJob:
    """The message for a job: its queue, and who asked in a header the worker can read."""
    options = dict(options)
    if not options.get("queue"):  # a schedule's empty queue means the task's own
        options["queue"] = queue_for_task(task.name)
    # Every job is made here (job_enqueue, job_enqueue_many, beat's job_publish): one sent
    # where no worker reads would wait for good, so it is refused before any record.
    problem = job_destination_problem(
        options["queue"], task.name, options.pop("exchange", None), options.pop("routing_key", None)
    )
    if problem:
        raise JobQueueRefused(problem[1])
    # Neither exchange nor routing key is passed on: Celery routes by the queue's binding.
    given = options.get("headers") or {}
    options["headers"] = {
        **{name: value for name, value in given.items() if name not in RESERVED_HEADERS},
        REQUESTER_HEADER: requester.as_header(),
    }
    return OutboundJob(
        task=task,
        task_id=task_id,
        args=list(args),
        kwargs=kwargs,
        options=options,
        run_after=run_after,
    )


def job_record_pending(
    message: OutboundJob, *, requester: Requester, audit: bool = False, audit_object: Any = None
) -> Job:
    """Record a job that is not sent yet: its Job row and PENDING TaskResult and, with
    `audit` for a job a person asked for, the admin LogEntry pointing at `audit_object` (by
    default the Job). One round trip, or two when the entry points at the Job, whose id it
    needs."""
    job = _job_row(message, requester)
    rows: list[Model] = [job, _pending_result(message, requester)]
    # No savepoint: inside the caller's transaction the rows live or die with it anyway.
    with transaction.atomic(savepoint=False):
        if audit and requester.kind == RequesterKind.USER and requester.user_id is not None:
            if audit_object is None:
                insert_rows(*rows)
                audit_object, rows = job, []
            rows.append(_queued_log_entry(requester, message, audit_object))
        insert_rows(*rows)
    return job


def _job_row(message: OutboundJob, requester: Requester) -> Job:
    return Job(
        task_id=message.task_id,
        task_name=message.task.name,
        queue=message.options["queue"],
        **requester.as_fields(),
        run_after=message.run_after,
    )


def _pending_result(message: OutboundJob, requester: Requester) -> TaskResult:
    return TaskResult(
        task_id=message.task_id,
        task_name=message.task.name,
        task_args=json.dumps(message.args),
        task_kwargs=json.dumps(message.kwargs),
        status=states.PENDING,
        content_type="application/json",
        content_encoding="utf-8",
        periodic_task_name=(requester.label if requester.kind == RequesterKind.SCHEDULE else None),
    )


def _queued_log_entry(requester: Requester, message: OutboundJob, audit_object: Model) -> LogEntry:
    """The admin history entry "Queued job …" on `audit_object`, as LogEntry.log_actions
    would write it."""
    assert requester.user_id is not None
    return LogEntry(
        user_id=requester.user_id,
        content_type=ContentType.objects.get_for_model(audit_object, for_concrete_model=False),
        object_id=str(audit_object.pk),
        object_repr=str(audit_object)[:200],
        action_flag=ADDITION,
        change_message=f"Queued job {message.task.name} [{message.task_id}]",
    )
