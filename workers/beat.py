"""The beat scheduler: django-celery-beat's, with every scheduled job recorded like any other.

A job started by a schedule appears in the admin as PENDING with the schedule's name as its
requester, the same way a job started by a person does. A deferred job's one-off entry
(workers/deferred.py) sends the job recorded when it was enqueued instead of a new one.

A firing that meets an unreachable SQS is not lost: its job stays recorded, unsent, and the
outbox sweeper or the schedule's next firing sends it once SQS is back (one such job per
schedule, however many firings the outage spans). Nor is one that meets an unreachable
database (a failover, a restart): beat waits for it, up to BEAT_DATABASE_WAIT, and records
and sends the firing late instead of dropping it (Celery has already counted it as served,
so a nightly stop or a morning start was otherwise lost until the next day).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from celery.beat import SchedulingError
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from workers.celery_compat import beat_entry_arguments
from workers.claims import database_wait
from workers.deferred import DEFERRED_JOB_HEADER, deferred_job_send, is_deferred_entry
from workers.enqueue import (
    BrokerUnavailable,
    Requester,
    job_destination_problem,
    job_publish,
    new_task_id,
)
from workers.models import Job, RequesterKind
from workers.outbox import BROKER_ERRORS
from workers.services import job_send_recorded

logger = logging.getLogger(__name__)

# How long a firing waits for an unreachable database before it is given up. Beat can do
# nothing else without its database (its schedule and every job's record live there), and
# an RDS failover or restart takes a minute or two.
BEAT_DATABASE_WAIT = timedelta(minutes=10)


def schedule_unsent_job(name: str, task_name: str) -> str | None:
    """The task id of a job the schedule `name` started as `task_name` that is recorded but
    not sent yet (its firing met an unreachable SQS), if there is one. The task name keeps
    out jobs a scheduled job queued in turn under the schedule's name (the drift check's
    plans), which are not this schedule's firings."""
    return (
        Job.objects.filter(
            sent_at__isnull=True,
            run_after__isnull=True,
            requester_kind=RequesterKind.SCHEDULE,
            requester_label=name,
            task_name=task_name,
        )
        .values_list("task_id", flat=True)
        .order_by("created_at")
        .first()
    )


class CheckedModelEntry(ModelEntry):
    """The library's entry, which stops at a row whose headers are not a JSON object, and
    sends a row's firings to whatever queue it names.

    The library adds its own header to them (`headers['periodic_task_name'] = ...`): for
    `[1]` or `null` that is a TypeError, raised while beat reads its schedule, which ended
    beat (and `make run` with it) at every start. Such a row is disabled and said so, as the
    library does with arguments it cannot decode, and beat goes on with the others (a
    ValueError is how the library's reader skips a row)."""

    def __init__(self, model: Any, app: Any = None) -> None:
        try:
            headers = json.loads(model.headers or "{}")
        except ValueError:
            headers = {}  # the library's own loads raises ValueError, which skips the row
        if not isinstance(headers, dict):
            logger.error(
                "Disabling schedule %s: its headers are not a JSON object (%.100s)",
                model.name,
                model.headers,
            )
            self._disable(model)
            raise ValueError(f"schedule {model.name}: headers are not a JSON object")
        problem = job_destination_problem(
            model.queue, model.task, model.exchange, model.routing_key
        )
        if problem:
            # Saved before the admin checked it (or from the shell, a fixture): each firing
            # would be refused by job_enqueue's check, once a minute or second, for good.
            field, why = problem
            logger.error("Disabling schedule %s: %s", model.name, why)
            self._disable(model)
            raise ValueError(f"schedule {model.name}: its {field} reaches no worker")
        super().__init__(model, app=app)


class RecordingDatabaseScheduler(DatabaseScheduler):
    Entry = CheckedModelEntry

    def setup_schedule(self) -> None:
        # Register every task module, so a scheduled name resolves to its Task here.
        self.app.loader.import_default_modules()
        super().setup_schedule()

    def apply_async(
        self, entry: ModelEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
        # Celery has counted this firing as served before calling us: one that fails on the
        # database now is never fired again. Wait for it instead (logged once).
        if not database_wait(BEAT_DATABASE_WAIT, what=f"to record the firing of {entry.name}"):
            raise SchedulingError(
                f"Couldn't apply scheduled task {entry.name}: the database stayed "
                f"unreachable for {BEAT_DATABASE_WAIT.total_seconds():.0f} s; this firing is "
                "lost, the schedule's next one runs as usual."
            )
        deferred_task_id = (entry.options.get("headers") or {}).get(DEFERRED_JOB_HEADER)
        if deferred_task_id:
            if not is_deferred_entry(entry.name, entry.task, deferred_task_id):
                # The header alone is no proof: beat's schedules can be edited in the admin.
                raise SchedulingError(
                    f"{entry.name}: not the deferred entry of job {deferred_task_id}; not sent"
                )
            return self._send_deferred(entry, deferred_task_id, advance=advance)
        task = self.app.tasks.get(entry.task)
        if task is None:
            # Unknown to this process (e.g. a task of an app not installed here): send as is.
            return super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        entry = self.reserve(entry) if advance else entry
        waiting = schedule_unsent_job(entry.name, task.name)
        # An earlier firing could not be sent (SQS was down) and is still recorded, waiting:
        # this firing sends that job instead of adding a second one, so an outage leaves one
        # catch-up job per schedule, not one per missed firing.
        if waiting is not None and self._send_waiting(entry, waiting):
            return self.app.AsyncResult(waiting)
        task_id = new_task_id()
        args, kwargs = beat_entry_arguments(entry)
        try:
            job_publish(
                task,
                task_id=task_id,
                requester=Requester.schedule(entry.name),
                args=args,
                kwargs=kwargs,
                producer=producer,
                **entry.options,
            )
        except BrokerUnavailable as exc:
            # The firing is recorded (its job waits to be sent): saved as served like a sent
            # one, so a beat restarted in the outage does not fire the occurrence again.
            self._sent()
            raise SchedulingError(f"Couldn't apply scheduled task {entry.name}: {exc}") from exc
        self._sent()
        return self.app.AsyncResult(task_id)

    def _send_waiting(self, entry: ModelEntry, task_id: str) -> bool:
        """Send the schedule's waiting job; False if it no longer waits (the outbox sweeper
        is sending it, it was discarded, or it could not be sent at all and ended failed),
        when this firing goes out as a new job."""
        try:
            sent = job_send_recorded(task_id=task_id)
        except BROKER_ERRORS as exc:
            self._sent()  # served by the waiting job, as above
            raise SchedulingError(
                f"Couldn't apply scheduled task {entry.name}: the job queue is still "
                f"unreachable ({exc.__class__.__name__}); job {task_id}, recorded at an "
                "earlier firing, waits to be sent once it is back."
            ) from exc
        if sent:
            self._sent()
        return sent

    def _sent(self) -> None:
        """Count a send as beat's own apply_async does, so CELERY_BEAT_SYNC_EVERY = 1 saves
        the entry's last run at once. django-celery-beat otherwise writes it every three
        minutes: a beat killed in between (out of memory, a lost host) starts again from the
        older time and sends the same occurrence a second time."""
        self._tasks_since_sync += 1
        if self.should_sync():
            self._do_sync()

    def _send_deferred(self, entry: ModelEntry, task_id: str, *, advance: bool) -> Any:
        """A deferred job came due: send the job recorded at enqueue, under its own id.
        If the broker is down, the outbox sweep sends it once it is back."""
        entry = self.reserve(entry) if advance else entry
        try:
            deferred_job_send(task_id=task_id)
        except BROKER_ERRORS as exc:
            raise SchedulingError(f"Couldn't send deferred job {task_id}: {exc!r}") from exc
        self._sent()
        return self.app.AsyncResult(task_id)
