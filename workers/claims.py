"""Each delivery of a job claims it before doing anything; a duplicate does nothing.

SQS delivers at least once: the same message can reach two workers milliseconds apart.
Every task (this is the app's task class) first claims its job with one conditional UPDATE
of its `Job` row: it wins only if nobody holds the job or the holder's lease ran out. The
lease lasts half a visibility timeout and the holder's worker renews it every third of the
timeout, from the database alone (workers/visibility.py, ClaimRenewer), so also while SQS
is down or hangs: a live holder keeps it, and a dead one's lease has ended before SQS makes
the message visible again (at least two thirds of a timeout after the holder's last
extension), so that delivery wins, and takes the job over (`request.taken_over`): it was
under way when its holder died, and a step that must not be done twice (a terraform apply)
is not started again.

The claim is released when the task ends. A later delivery of a job that has ended (SQS
could not be told it was done: the DeleteMessage failed in an outage, the visibility timeout
ran out just before it, or a send that timed out reached SQS after all and was sent again)
finds the job's result SUCCESS, FAILURE or REVOKED and is dropped without running or
touching the record: a failed job ran again under its own id, its failure overwritten by a
success nobody asked for (Retry makes a new job), and a cancelled one ran. A redrive from
the dead-letter queue recorded after it ended would start it again, but the operations page
no longer sends back the letter of an ended job (workers/dead_letters.py). Celery
itself would mark the job STARTED before any of this (CELERY_TASK_TRACK_STARTED),
overwriting a finished job's record and, for a duplicate, the running holder's worker: so
the app's tasks mark STARTED here instead, once the delivery holds the job and has found it
unfinished.

A database that is gone (a failover) is waited out, never turned into a job that reads
PENDING or STARTED for good: a delivery that cannot claim its job leaves a copy of its
message for 10 s later and is dropped, and a job that fails on the database waits for it to
record the failure and end its domain row.

A delivery that loses cannot tell a true duplicate from the last delivery of a job whose
process died: a pool process killed mid-job (the kernel's OOM killer, a person) holds its
lease while its worker hands the message straight back. On that same worker the delivery
sees the holder's process is gone and takes the job over. On another worker it cannot look,
so it leaves a copy of the message that SQS holds back until the lease has run out (a
"recheck", `DelaySeconds`) and is dropped (`Ignore`). The recheck claims like any delivery:
a lapsed lease means the holder died, and the job is taken over and run; a released claim
means the job finished, and the task's guard answers; a lease still renewed means a live
holder, and the recheck is dropped for good. No job is left to the reconciler
(workers/reconcile.py) because its process died on a worker that lives on.

A recheck leaves no recheck of its own. Should the job's process die again and its message
come back to another worker, the job is left to the reconciler ("worker lost"): a job that
kills its process every time cannot go round for ever in fresh copies, out of reach of the
receive count that sends a poison message to the dead-letter queue.
"""

from __future__ import annotations

import enum
import logging
import os
import time
from datetime import timedelta
from typing import Any, NoReturn

from celery import states
from celery.contrib.django.task import DjangoTask
from celery.exceptions import Ignore, TimeLimitExceeded
from celery.signals import task_revoked
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection
from django.utils import timezone

logger = logging.getLogger(__name__)


class Claim(enum.Enum):
    HELD = "held"
    # Held, from a process that died holding it (seen gone on this worker, or its lease
    # found lapsed, not released): the job was under way and may have stopped half-way.
    TAKEN_OVER = "taken over"
    LOST = "lost"
    UNTRACKED = "untracked"  # no Job row (not started through job_enqueue): nothing to claim


# The header a recheck carries (a copy left by a delivery that lost its claim).
RECHECK_HEADER = "opsqueue_claim_recheck"
# A delivery that found the database unreachable comes back this much later.
DATABASE_RETRY_DELAY = timedelta(seconds=10)
# A job that failed on its database waits this long for it to come back, to record that
# (an RDS Multi-AZ failover takes one to two minutes).
DATABASE_WAIT = timedelta(seconds=120)
# A recheck comes back this long after the lease it waits for was due to end.
RECHECK_MARGIN = timedelta(seconds=2)


def lease() -> timedelta:
    return timedelta(seconds=settings.SQS_VISIBILITY_TIMEOUT_SECONDS / 2)


def claim_holder(hostname: str | None) -> str:
    return f"{hostname or 'unknown'}:{os.getpid()}"


def job_claim(*, task_id: str, holder: str, recheck: bool = False) -> Claim:
    """Claim the job for `holder`. A `recheck` (see the module's docstring) that finds a
    lapsed lease takes the job over: its holder stopped renewing, so it died mid-job."""
    from workers.models import Job

    now = timezone.now()
    if recheck and (
        Job.objects.filter(task_id=task_id, claimed_until__lt=now).update(
            claimed_by=holder, claimed_until=now + lease()
        )
    ):
        logger.warning("job %s: its holder stopped renewing its claim; taken over", task_id)
        return Claim.TAKEN_OVER
    if Job.objects.filter(task_id=task_id, claimed_until__isnull=True).update(
        claimed_by=holder, claimed_until=now + lease()
    ):
        return Claim.HELD
    if Job.objects.filter(task_id=task_id, claimed_until__lt=now).update(
        claimed_by=holder, claimed_until=now + lease()
    ):
        # Held and not released, nor renewed: its holder died mid-job (its worker killed,
        # SQS delivering the message again once its visibility ran out). A step that must
        # not be done twice (a terraform apply) reads this, as from a recheck.
        logger.warning("job %s: its holder stopped renewing its claim; taken over", task_id)
        return Claim.TAKEN_OVER
    held_by = Job.objects.filter(task_id=task_id).values_list("claimed_by", flat=True).first()
    if held_by is None:
        return Claim.UNTRACKED
    if _holder_died_here(held_by, holder) and (
        Job.objects.filter(task_id=task_id, claimed_by=held_by).update(
            claimed_by=holder, claimed_until=now + lease()
        )
    ):
        # The pool process that held it was killed (by the kernel for memory, by a person)
        # and its worker gave the message straight back: this is no duplicate but the job's
        # only delivery left, and dropping it would leave the job STARTED for good.
        logger.warning("job %s: its process %s is gone; taken over", task_id, held_by)
        return Claim.TAKEN_OVER
    return Claim.LOST


def _holder_died_here(held_by: str, holder: str) -> bool:
    """Whether `held_by` is a process of this same worker (so of this machine) that no
    longer exists. Another worker's processes cannot be looked at: their leases run out."""
    node, _, pid = held_by.rpartition(":")
    if node != holder.rpartition(":")[0] or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, another user's
    # A zombie has exited too: only its parent has not read its status yet.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] == "Z"
    except OSError:
        return False


def _message_copy(
    task: Any, request: Any, *, queue: str, headers: dict[str, Any], run_after: Any
) -> Any:
    """The message being run, as a new message to `queue` held back until `run_after`."""
    from workers.outbox import OutboundJob

    options: dict[str, Any] = {"queue": queue, "headers": headers}
    hard, soft = request.timelimit or (None, None)
    if hard:
        options["time_limit"] = hard
    if soft:
        options["soft_time_limit"] = soft
    for name in ("argsrepr", "kwargsrepr"):
        if getattr(request, name, None) is not None:
            options[name] = getattr(request, name)
    return OutboundJob(
        task=task,
        task_id=request.id,
        args=list(request.args or ()),
        kwargs=dict(request.kwargs or {}),
        options=options,
        run_after=run_after,
    )


def job_recheck_leave(task: Any, request: Any) -> bool:
    """Leave a copy of the message being run, held back by SQS until the lease on its job
    has run out, marked as a recheck; False if the job is not held, or the copy could not
    be sent (the reconciler then ends the job if its holder is gone)."""
    from workers.enqueue import REQUESTER_HEADER, Requester
    from workers.models import Job

    job = Job.objects.filter(task_id=request.id, claimed_until__isnull=False).first()
    if job is None or job.claimed_until is None:
        return False
    # The message's own headers (who asked, a schedule's), marked as a recheck.
    headers = {REQUESTER_HEADER: Requester.of(job).as_header(), **(request.headers or {})}
    copy = _message_copy(
        task,
        request,
        queue=job.queue,
        headers={**headers, RECHECK_HEADER: job.claimed_by},
        run_after=job.claimed_until + RECHECK_MARGIN,
    )
    return _copy_send(copy, request, what="leave a recheck")


def _copy_send(copy: Any, request: Any, *, what: str) -> bool:
    """Publish a copy of the message being run; False (logged) if SQS could not take it."""
    from workers.outbox import BROKER_ERRORS, publish_now

    try:
        publish_now(copy)
    except BROKER_ERRORS as exc:
        logger.warning("job %s: could not %s: %r", request.id, what, exc)
        return False
    return True


def job_later_leave(task: Any, request: Any, *, delay: timedelta) -> bool:
    """Leave a copy of the message being run that SQS holds back for `delay`, from the
    message alone (the database cannot be asked); False if it could not be sent."""
    from workers.enqueue import REQUESTER_HEADER
    from workers.queues import queue_for_task

    headers = dict(request.headers or {})
    for name in (REQUESTER_HEADER, RECHECK_HEADER):
        value = getattr(request, name, None)
        if value is not None:
            headers.setdefault(name, value)
    queue = (request.delivery_info or {}).get("routing_key") or queue_for_task(task.name)
    copy = _message_copy(
        task, request, queue=queue, headers=headers, run_after=timezone.now() + delay
    )
    return _copy_send(copy, request, what="send it again for later")


def job_claim_release(*, task_id: str, holder: str) -> None:
    from workers.models import Job

    Job.objects.filter(task_id=task_id, claimed_by=holder).update(claimed_until=None)


def job_claims_renew(*, task_ids: list[str], hostname: str) -> int:
    """Push the leases this worker's processes hold on these jobs one timeout further."""
    from workers.models import Job

    until = timezone.now() + lease()
    return Job.objects.filter(
        task_id__in=task_ids, claimed_by__startswith=f"{hostname}:", claimed_until__isnull=False
    ).update(claimed_until=until)


def database_wait(timeout: timedelta, *, what: str) -> bool:
    """Wait until this thread's connection to the database can be opened again; False if
    it could not within `timeout`."""
    deadline = time.monotonic() + timeout.total_seconds()
    pause = 0.2
    logged = False
    while True:
        try:
            connection.ensure_connection()
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        except DatabaseError as exc:
            connection.close()
            if time.monotonic() + pause > deadline:
                return False
            if not logged:
                logger.warning("waiting for the database %s: %s", what, exc)
                logged = True
            time.sleep(pause)
            pause = min(pause * 2, 5.0)
        else:
            return True


def _job_ended(task_id: str) -> str | None:
    """The state a job ended in (SUCCESS, FAILURE, REVOKED), or None while it may run: it
    has not ended, or a person sent its message back from the dead-letter queue after it
    ended (a redrive starts it again)."""
    from django_celery_results.models import TaskResult

    from workers.models import DeadLetterAction

    ended = (
        TaskResult.objects.filter(task_id=task_id, status__in=states.READY_STATES)
        .values_list("status", "date_done")
        .first()
    )
    if ended is None:
        return None
    status, done = ended
    redriven = DeadLetterAction.objects.filter(task_id=task_id, kind=DeadLetterAction.Kind.REDRIVE)
    if done is not None and redriven.filter(at__gt=done).exists():
        return None
    return str(status)


class ClaimedTask(DjangoTask):
    # DjangoTask: the app's tasks keep Celery's Django API (`delay_on_commit`), which a
    # project's own code may use beside opsqueue's `job_enqueue`.

    # Celery's own STARTED mark comes before `__call__`, so before the claim and the look
    # at the job's result: off, and done by `_mark_started` (when CELERY_TASK_TRACK_STARTED
    # asks for it) unless the task marks itself (`marks_started_itself`, Django's Tasks API).
    track_started = False
    marks_started_itself = False
    # Sends the event of a job that ended through workers.outcomes, which Celery does not.
    Request = "workers.outcomes:JobRequest"

    def _mark_started(self, request: Any) -> None:
        ignore_result = (
            request.ignore_result if request.ignore_result is not None else self.ignore_result
        )
        if self.marks_started_itself or ignore_result or not self.app.conf.task_track_started:
            return
        first_start = None
        if getattr(request, "taken_over", False):
            from django_celery_results.models import TaskResult

            first_start = (
                TaskResult.objects.filter(task_id=request.id)
                .values_list("date_started", flat=True)
                .first()
            )
        # What Celery's tracer stores for STARTED.
        self.backend.store_result(
            request.id,
            {"pid": os.getpid(), "hostname": request.hostname},
            states.STARTED,
            request=request,
        )
        if first_start is not None:
            # Taken over from a process that died: the job started when that one started it
            # (storing STARTED again dates it now), so its duration counts from then.
            TaskResult.objects.filter(task_id=request.id).update(date_started=first_start)

    def _leave_for_later(self, request: Any, exc: OperationalError | InterfaceError) -> NoReturn:
        """The database could not be reached before the job started (a failover, a
        restart): nothing of the job has run, and nothing can be recorded. Failing it would
        acknowledge the message and then fail to store the failure, leaving the job PENDING
        for good; so a copy of the message comes back after DATABASE_RETRY_DELAY and this
        delivery is dropped. If SQS cannot take the copy either, the job fails as before."""
        connection.close()
        if not job_later_leave(self, request, delay=DATABASE_RETRY_DELAY):
            raise exc
        logger.warning(
            "%s [%s]: the database is unreachable (%s); not started, delivered again in %ds",
            self.name,
            request.id,
            exc,
            DATABASE_RETRY_DELAY.total_seconds(),
        )
        raise Ignore() from exc

    def _end_when_database_back(self, request: Any, exc: DatabaseError) -> None:
        """The job failed on its database. If the database is gone (a failover, a
        restart), Celery could not store the failure and the worker would acknowledge the
        message anyway: the job would read STARTED until the reconciler called it lost,
        its domain row RUNNING. So the failure waits (up to DATABASE_WAIT) for the database
        to come back, and the job's domain row is ended with the cause (its handler leaves
        a row the job's own code ended alone); Celery then stores FAILURE with it."""
        if not database_wait(DATABASE_WAIT, what=f"to record how job {request.id} ended"):
            logger.error(
                "job %s [%s]: the database stayed unreachable for %ds; its failure is not "
                "recorded (the reconciler ends it)",
                self.name,
                request.id,
                DATABASE_WAIT.total_seconds(),
            )
            return
        from workers.reconcile import job_ended_unseen

        try:
            job_ended_unseen(
                task_name=self.name,
                task_id=request.id,
                reason=f"{exc.__class__.__name__}: {exc}".strip(),
            )
        except Exception:
            logger.exception("could not end the record of job %s [%s]", self.name, request.id)
            connection.close()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request
        if request.is_eager or not request.id or request.called_directly:
            return super().__call__(*args, **kwargs)
        holder = claim_holder(request.hostname)
        recheck = getattr(request, RECHECK_HEADER, None) is not None
        try:
            claim = job_claim(task_id=request.id, holder=holder, recheck=recheck)
        except (OperationalError, InterfaceError) as exc:
            # Unreachable, not a bug: a missing table would otherwise come back for ever.
            self._leave_for_later(request, exc)
        if claim is Claim.LOST:
            if recheck:
                logger.warning(
                    "recheck of %s [%s]: another delivery holds the job; dropped",
                    self.name,
                    request.id,
                )
            elif job_recheck_leave(self, request):
                logger.warning(
                    "duplicate delivery of %s [%s]: another delivery holds the job; "
                    "skipped, and checked again once its lease has run out",
                    self.name,
                    request.id,
                )
            else:
                logger.warning(
                    "duplicate delivery of %s [%s]: another delivery holds the job; skipped",
                    self.name,
                    request.id,
                )
            raise Ignore()
        # A step that must not be done twice (a terraform apply) reads this: the job was
        # under way in a process that died, and may have stopped half-way.
        request.taken_over = claim is Claim.TAKEN_OVER
        try:
            try:
                ended = _job_ended(request.id)
                if ended is None:
                    self._mark_started(request)
            except (OperationalError, InterfaceError) as exc:
                self._leave_for_later(request, exc)
            if ended is not None:
                logger.info(
                    "late delivery of %s [%s]: it ended already (%s); not run again",
                    self.name,
                    request.id,
                    ended,
                )
                raise Ignore()
            return super().__call__(*args, **kwargs)
        except DatabaseError as exc:
            if not connection.in_atomic_block:
                # The error may have broken the connection: the result (with this, the
                # real cause) and the release below go out on a fresh one.
                connection.close()
                self._end_when_database_back(request, exc)
            raise
        finally:
            if claim in (Claim.HELD, Claim.TAKEN_OVER):
                try:
                    job_claim_release(task_id=request.id, holder=holder)
                except Exception:
                    # The lease then just runs out; a redelivery waits that long at most.
                    logger.exception("could not release the claim on job %s", request.id)

    def on_failure(
        self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any
    ) -> None:
        if isinstance(exc, TimeLimitExceeded):
            # Called in the worker's main process, which killed the one running the job at
            # its hard time limit: the job's own code, which records how its domain row
            # ended, never ran to its end. The job is FAILURE already (Celery records it).
            from workers.reconcile import job_ended_unseen

            try:
                job_ended_unseen(
                    task_name=self.name,
                    task_id=task_id,
                    reason=f"killed at its hard time limit ({exc.args[0] if exc.args else '?'} s)",
                )
            except Exception:
                logger.exception("could not end the record of job %s [%s]", self.name, task_id)
        super().on_failure(exc, task_id, args, kwargs, einfo)


@task_revoked.connect
def _job_revoked(
    sender: Any = None,
    request: Any = None,
    terminated: bool = False,
    signum: Any = None,
    expired: bool = False,
    **kwargs: Any,
) -> None:
    """A job revoked (Flower's Revoke or Terminate, `celery control revoke`) or expired is
    recorded REVOKED by its worker's main process: its own code never ran, or was killed
    mid-way, and could not end its domain row. It is ended here, as at the hard time limit,
    by the handler its app registered (each leaves a row that has ended already alone)."""
    task_id = getattr(request, "id", None)
    if sender is None or not task_id:
        return
    from workers.reconcile import job_ended_unseen

    if terminated:
        reason = f"terminated while running (revoked with signal {signum})"
    elif expired:
        reason = "expired before it started"
    else:
        reason = "revoked before it started"
    try:
        job_ended_unseen(task_name=sender.name, task_id=task_id, reason=reason)
    except Exception:
        logger.exception("could not end the record of job %s [%s]", sender.name, task_id)
