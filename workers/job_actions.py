"""Acting on jobs a person picked: retry, discard, delete old records (one or many).

One rule for all of them: whoever may view jobs may look; acting on a job needs the named
permission of its family (`workers.act_on_<family>_jobs`), checked here, where the work is
done, whichever page asked. A retry starts the job anew, so it also needs what starting it
from anywhere else needs (`families.job_startable`: a schedule's Run now, a redrive).
Every job acted on gets an admin LogEntry on its record saying who did what (one entry per
job, so a job's own history tells its story).

Many jobs are handled in batches of at most BATCH_SIZE per call: a request stays short
however many jobs a filter matches, and the page offers to go on with the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.admin.models import CHANGE, DELETION, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from django_celery_results.models import TaskResult

from workers import display
from workers.enqueue import (
    BrokerUnavailable,
    JobArgumentsRefused,
    JobRequest,
    Requester,
    job_arguments_check,
    job_enqueue,
    job_enqueue_many,
)
from workers.errors import ApplicationError
from workers.families import job_startable
from workers.job_filters import (
    discarded_condition,
    family_slug,
    known_task_names,
    registered_task,
    retried_condition,
)
from workers.models import JOB_FAMILY_SLUGS, Job, JobLogChunk, WorkerHeartbeat
from workers.queues import QUEUES
from workers.retries import input_refused_condition, job_retry_rule

# request.user: has_perm, get_username and pk (django-stubs types it without has_perm).
User = Any

BATCH_SIZE = 500
FAILED_STATES = ("FAILURE", "REVOKED")
RUNNING_STATES = ("RECEIVED", "STARTED")
# Records younger than this are kept by "delete old records": they may still be looked at.
DELETE_MIN_AGE = timedelta(days=7)
# A worker whose heartbeat is older than this many intervals is gone (its jobs are lost).
HEARTBEAT_MISSES_ALLOWED = 3


class JobActionRefused(ApplicationError):
    """The action is not allowed on this job; the message says why, for the person."""


def job_action_permission(task_name: str | None) -> str:
    return f"workers.act_on_{family_slug(task_name)}_jobs"


def may_act_on_jobs(user: User) -> bool:
    """Whether this user may act on any family's jobs (else the pages offer no action)."""
    return any(user.has_perm(f"workers.act_on_{slug}_jobs") for slug, _ in JOB_FAMILY_SLUGS)


def online_workers(*, now: datetime | None = None) -> QuerySet[WorkerHeartbeat]:
    now = now or timezone.now()
    since = now - timedelta(seconds=settings.WORKER_HEARTBEAT_SECONDS * HEARTBEAT_MISSES_ALLOWED)
    return WorkerHeartbeat.objects.filter(last_seen_at__gte=since)


def lost_condition(*, now: datetime | None = None) -> Q:
    """Started on a worker that is no longer alive, or whose claim nobody has renewed for a
    visibility timeout (the process running it died on a live worker): nobody will finish
    it."""
    now = now or timezone.now()
    alive = online_workers(now=now).values("hostname")
    unclaimed = Job.objects.filter(
        claimed_until__lt=now - timedelta(seconds=settings.SQS_VISIBILITY_TIMEOUT_SECONDS)
    ).values("task_id")
    return Q(status__in=RUNNING_STATES) & (~Q(worker__in=alive) | Q(task_id__in=unclaimed))


def _permitted_task_names(user: User, *, retry: bool = False) -> list[str]:
    return [
        name
        for name in known_task_names()
        if user.has_perm(job_action_permission(name))
        and (not retry or (job_retry_rule(name).safe and job_startable(user, name)))
    ]


def retry_candidates(queryset: QuerySet[TaskResult], *, user: User) -> QuerySet[TaskResult]:
    """Of these jobs, the ones this user may retry now (but for arguments that no longer
    fit their task, which only decoding each job's arguments can tell)."""
    candidates = (
        queryset.filter(task_name__in=_permitted_task_names(user, retry=True))
        .filter(Q(status__in=FAILED_STATES) | lost_condition())
        .exclude(retried_condition())
        .exclude(discarded_condition())
    )
    refused = input_refused_condition()
    return candidates if refused is None else candidates.exclude(refused)


def discard_candidates(queryset: QuerySet[TaskResult], *, user: User) -> QuerySet[TaskResult]:
    return (
        queryset.filter(task_name__in=_permitted_task_names(user))
        .filter(Q(status__in=FAILED_STATES) | lost_condition())
        .exclude(retried_condition())
        .exclude(discarded_condition())
    )


def delete_candidates(
    queryset: QuerySet[TaskResult], *, user: User, now: datetime | None = None
) -> QuerySet[TaskResult]:
    cutoff = (now or timezone.now()) - DELETE_MIN_AGE
    return queryset.filter(
        task_name__in=_permitted_task_names(user),
        status__in=display.FINISHED_STATES,
        date_created__lt=cutoff,
    )


@dataclass(frozen=True)
class RetryObstacle:
    """Why a job is not retried, said to the person retrying it alone (`sentence`) and in
    a batch's summary: `several`, what is said of every job left alone for it, and `one`,
    what is said instead when only one was (empty: the same)."""

    sentence: str
    several: str
    one: str = ""


def retry_obstacle(
    task_id: str,
    result: TaskResult | None,
    job: Job | None,
    user: User,
    *,
    retried_as: Callable[[], str | None],
    lost: Callable[[], bool],
) -> RetryObstacle | None:
    """What keeps this user from retrying this job now (None: nothing). The one rule for a
    job page's Retry button, `job_retry` and a batch's summary. Whether the job was retried
    already and whether it is lost are asked only when it comes to that: a batch knows them
    for all its jobs, a single job looks them up."""
    if result is None or job is None:
        return RetryObstacle(
            "There is no record of this job any more: it expired.", *_no_record(task_id)
        )
    name, family = result.task_name, display.job_family(result.task_name)
    if not user.has_perm(job_action_permission(name)):
        return RetryObstacle(
            f"You may look at {family} jobs but not act on them.", *_may_not_act(family)
        )
    rule = job_retry_rule(name)
    if not rule.safe:
        said = f"{display.task_short_name(name)} jobs are not retried. {rule.refusal}".strip()
        return RetryObstacle(said, said)
    if not job_startable(user, name):
        # A retry starts the job anew: it needs what Run now and a schedule need.
        return RetryObstacle(
            f"Retrying starts a new {family} job, and you may not start those.",
            f"retrying starts a new {family} job, and you may not start those",
        )
    if job.discarded_at is not None:
        return RetryObstacle("This job was discarded; it is not retried.", *_discarded_already(job))
    again = retried_as()
    if again:
        return RetryObstacle(
            f"This job was retried already, as job {again}.",
            *_retried_already(job.task_id, again),
        )
    return _input_obstacle(result) or _not_failed_obstacle(result, lost)


def _input_obstacle(result: TaskResult) -> RetryObstacle | None:
    """Why the job's stored input cannot start it again, if it cannot: its task is gone,
    its arguments no longer fit the task (a release changed it, a schedule stored wrong
    ones: job_enqueue would refuse them), or it was refused and would be again."""
    task = registered_task(result.task_name or "")
    if task is None:
        return RetryObstacle(
            f"No task {result.task_name} in this version of the code.",
            f"no task {result.task_name} in this version of the code",
        )
    args, kwargs = display.arguments_decoded(result.task_args, result.task_kwargs)
    try:
        job_arguments_check(task, args, kwargs)
    except JobArgumentsRefused as exc:
        return RetryObstacle(
            f"Its arguments do not fit the task in this version of the code: {exc}",
            "its arguments do not fit the task in this version of the code",
        )
    refused = job_retry_rule(result.task_name).input_refused(result.result)
    if refused:
        return RetryObstacle(
            f"Its input was refused; running it again would end the same way. {refused}",
            f"its input was refused, and would be again. {refused}",
        )
    return None


def _not_failed_obstacle(result: TaskResult, lost: Callable[[], bool]) -> RetryObstacle | None:
    if result.status in FAILED_STATES or lost():
        return None
    label = display.state_label(result.status)
    return RetryObstacle(
        f"Only a failed, cancelled or lost job is retried; this one is {label}.",
        *_not_failed(label, "retried"),
    )


def job_retry_refusal(*, result: TaskResult | None, job: Job | None, user: User) -> str:
    """Why this user cannot retry this job now ('' if they can)."""
    obstacle = retry_obstacle(
        getattr(result or job, "task_id", ""),
        result,
        job,
        user,
        retried_as=lambda: (
            Job.objects.filter(retry_of=job).values_list("task_id", flat=True).first()
        ),
        lost=lambda: (
            result is not None
            and TaskResult.objects.filter(pk=result.pk).filter(lost_condition()).exists()
        ),
    )
    return obstacle.sentence if obstacle else ""


@transaction.atomic
def job_retry(*, task_id: str, user: User) -> str:
    """Queue the job again with the same arguments, as asked by `user`; the new task id."""
    job = Job.objects.select_for_update().filter(task_id=task_id).first()
    result = TaskResult.objects.filter(task_id=task_id).first()
    refusal = job_retry_refusal(result=result, job=job, user=user)
    if refusal:
        raise JobActionRefused(refusal)
    assert job is not None and result is not None
    task = registered_task(result.task_name or "")
    assert task is not None  # retry_obstacle says when it is gone
    args, kwargs = display.arguments_decoded(result.task_args, result.task_kwargs)
    new_task_id = job_enqueue(
        task, requester=Requester.for_user(user), args=args, kwargs=kwargs, queue=_queue(job)
    )
    Job.objects.filter(task_id=new_task_id).update(retry_of=job)
    _audit(user, [result], CHANGE, f"Retried as job {new_task_id}")
    return new_task_id


def _queue(job: Job) -> str | None:
    """The queue a retry goes to: its job's, or the task's own if that one is not ours (a
    schedule saved with a queue no worker reads sent it there, and it was cancelled)."""
    return job.queue if job.queue in QUEUES else None


@dataclass
class BulkOutcome:
    done: list[str] = field(default_factory=list)
    # Why jobs were left alone, and how many for each reason.
    refused: Counter[str] = field(default_factory=Counter)
    stopped: str = ""  # set when the batch stopped early (the broker went away)
    queued: bool = False  # `done` are new jobs (a retry's), to be linked from the message


def jobs_retry(*, task_ids: Iterable[str], user: User) -> BulkOutcome:
    """Retry up to BATCH_SIZE jobs at once: what makes each retryable is checked again
    under row locks, and the new jobs are recorded in one batch (job_enqueue_many)."""
    ids = list(task_ids)[:BATCH_SIZE]
    outcome = BulkOutcome()
    with transaction.atomic():
        # Locked in a fixed order: two people retrying overlapping selections wait, and the
        # second finds the jobs retried already.
        originals = {
            job.task_id: job
            for job in Job.objects.select_for_update().filter(task_id__in=ids).order_by("pk")
        }
        chosen = []
        # retry_candidates asked the rest of retry_obstacle's questions in SQL, under the
        # locks; the job's record and its stored input are asked here.
        for result in retry_candidates(TaskResult.objects.filter(task_id__in=ids), user=user):
            if result.task_id not in originals or _input_obstacle(result):
                continue  # counted with the others left alone, below
            task = registered_task(result.task_name or "")
            args, kwargs = display.arguments_decoded(result.task_args, result.task_kwargs)
            queue = _queue(originals[result.task_id])
            chosen.append((result, JobRequest(task, args, kwargs, queue)))
        try:
            new_jobs = job_enqueue_many(
                [request for _, request in chosen], requester=Requester.for_user(user)
            )
        except BrokerUnavailable as exc:
            outcome.stopped = str(exc)
            return outcome
        for new_job, (result, _) in zip(new_jobs, chosen, strict=True):
            new_job.retry_of = originals[result.task_id]
        Job.objects.bulk_update(new_jobs, ["retry_of"], batch_size=BATCH_SIZE)
        _audit(
            user,
            [result for result, _ in chosen],
            CHANGE,
            [f"Retried as job {new_job.task_id}" for new_job in new_jobs],
        )
    outcome.done = [new_job.task_id for new_job in new_jobs]
    outcome.queued = True
    taken = {result.task_id for result, _ in chosen}
    outcome.refused = _left_alone([i for i in ids if i not in taken], user, _retry_why)
    return outcome


@transaction.atomic
def jobs_discard(*, task_ids: Iterable[str], user: User) -> BulkOutcome:
    ids = list(task_ids)[:BATCH_SIZE]
    chosen = discard_candidates(TaskResult.objects.filter(task_id__in=ids), user=user)
    # Only jobs with a Job record: that is where the mark is kept.
    recorded = set(Job.objects.filter(task_id__in=ids).values_list("task_id", flat=True))
    results = [r for r in chosen if r.task_id in recorded]
    done = [r.task_id for r in results]
    Job.objects.filter(task_id__in=done, discarded_at__isnull=True).update(
        discarded_at=timezone.now(), discarded_by_label=user.get_username()
    )
    _audit(user, results, CHANGE, "Discarded")
    taken = set(done)
    return BulkOutcome(
        done=done, refused=_left_alone([i for i in ids if i not in taken], user, _discard_why)
    )


@transaction.atomic
def jobs_delete_old(*, task_ids: Iterable[str], user: User) -> BulkOutcome:
    ids = list(task_ids)[:BATCH_SIZE]
    results = list(delete_candidates(TaskResult.objects.filter(task_id__in=ids), user=user))
    done = [r.task_id for r in results]
    _audit(user, results, DELETION, "Deleted the old record of this job")
    JobLogChunk.objects.filter(task_id__in=done).delete()
    Job.objects.filter(task_id__in=done).delete()
    TaskResult.objects.filter(task_id__in=done).delete()
    taken = set(done)
    return BulkOutcome(
        done=done, refused=_left_alone([i for i in ids if i not in taken], user, _delete_why)
    )


def jobs_left_alone(*, action: str, task_ids: Iterable[str], user: User) -> Counter[str]:
    """Why the action ("retry", "discard", "delete") would leave these jobs alone, and how
    many for each reason: said on its confirmation page, in the words its outcome uses."""
    why = {"retry": _retry_why, "discard": _discard_why, "delete": _delete_why}[action]
    return _left_alone(list(task_ids)[:BATCH_SIZE], user, why)


# Why a job in a batch was left alone: (what is said of several such jobs, what is said
# when it is the only one, or "" to say the same). A person who confirmed should read what
# happened to each job they picked: "Retried: 0 jobs." alone left them guessing.
Why = tuple[str, str]


@dataclass
class _Looked:
    """What deciding why jobs were left alone needs, read once for the whole batch."""

    results: dict[str, TaskResult]
    jobs: dict[str, Job]
    retried_as: dict[str, str]
    lost: set[str]


def _left_alone(ids: list[str], user: User, why: Any) -> Counter[str]:
    """How many of these jobs were left alone for each reason (none given: no reason)."""
    if not ids:
        return Counter()
    results = {r.task_id: r for r in TaskResult.objects.filter(task_id__in=ids)}
    jobs = {j.task_id: j for j in Job.objects.filter(task_id__in=ids)}
    retried_as: dict[str, str] = {}
    for original, again in (
        Job.objects.filter(retry_of__task_id__in=ids)
        .order_by("created_at")
        .values_list("retry_of__task_id", "task_id")
    ):
        retried_as.setdefault(original, again)
    lost = set(
        TaskResult.objects.filter(task_id__in=ids)
        .filter(lost_condition())
        .values_list("task_id", flat=True)
    )
    looked = _Looked(results, jobs, retried_as, lost)
    reasons = [why(task_id, looked, user) for task_id in ids]
    counts = Counter(several for several, _ in reasons)
    return Counter(
        (one or several) if counts[several] == 1 else several for several, one in reasons
    )


def _no_record(task_id: str) -> Why:
    return "no record of it any more", f"job {task_id} has no record any more"


def _may_not_act(family: str) -> Why:
    return f"you may look at {family} jobs but not act on them", ""


def _retried_already(task_id: str, again: str) -> Why:
    return "retried already", f"job {task_id} was retried already, as job {again}"


def _discarded_already(job: Job) -> Why:
    by = f", by {job.discarded_by_label}" if job.discarded_by_label else ""
    return "discarded already", f"job {job.task_id} was discarded already{by}"


def _not_failed(label: str, done: str) -> Why:
    return f"{label}, and only a failed, cancelled or lost job is {done}", ""


def _common_why(task_id: str, looked: _Looked, user: User) -> Why | None:
    result = looked.results.get(task_id)
    if result is None:
        return _no_record(task_id)
    if not user.has_perm(job_action_permission(result.task_name)):
        return _may_not_act(display.job_family(result.task_name))
    return None


def _done_already_why(task_id: str, looked: _Looked) -> Why | None:
    again = looked.retried_as.get(task_id)
    if again:
        return _retried_already(task_id, again)
    job = looked.jobs.get(task_id)
    if job is not None and job.discarded_at is not None:
        return _discarded_already(job)
    return None


def _not_failed_why(task_id: str, looked: _Looked, done: str) -> Why | None:
    result = looked.results[task_id]
    if result.status in FAILED_STATES or task_id in looked.lost:
        return None
    return _not_failed(display.state_label(result.status), done)


def _retry_why(task_id: str, looked: _Looked, user: User) -> Why:
    obstacle = retry_obstacle(
        task_id,
        looked.results.get(task_id),
        looked.jobs.get(task_id),
        user,
        retried_as=lambda: looked.retried_as.get(task_id),
        lost=lambda: task_id in looked.lost,
    )
    if obstacle is None:
        return "it changed while you looked", ""
    return obstacle.several, obstacle.one


def _discard_why(task_id: str, looked: _Looked, user: User) -> Why:
    common = _common_why(task_id, looked, user)
    if common:
        return common
    if task_id not in looked.jobs:
        return _no_record(task_id)
    done = _done_already_why(task_id, looked)
    if done:
        return done
    return _not_failed_why(task_id, looked, "discarded") or ("it changed while you looked", "")


def _delete_why(task_id: str, looked: _Looked, user: User) -> Why:
    common = _common_why(task_id, looked, user)
    if common:
        return common
    result = looked.results[task_id]
    if result.status not in display.FINISHED_STATES:
        label = display.state_label(result.status)
        return f"{label}, and only a finished job's record is deleted", ""
    return f"queued less than {DELETE_MIN_AGE.days} days ago", ""


def _audit(user: User, results: list[TaskResult], flag: int, message: str | list[str]) -> None:
    """One LogEntry per job, on its record: `message`, or each job's own."""
    if not results:
        return
    texts = message if isinstance(message, list) else [message] * len(results)
    content_type = ContentType.objects.get_for_model(TaskResult)
    LogEntry.objects.bulk_create(
        [
            LogEntry(
                user_id=user.pk,
                content_type=content_type,
                object_id=str(result.pk),
                object_repr=f"{display.task_short_name(result.task_name)} {result.task_id}"[:200],
                action_flag=flag,
                change_message=text,
            )
            for result, text in zip(results, texts, strict=True)
        ]
    )


def job_links(*, task_id: str) -> tuple[str | None, list[str]]:
    """(the job this one retries, the jobs that retry it): task ids."""
    job = Job.objects.filter(task_id=task_id).select_related("retry_of").first()
    if job is None:
        return None, []
    original = job.retry_of.task_id if job.retry_of else None
    return original, list(job.retries.order_by("created_at").values_list("task_id", flat=True))
