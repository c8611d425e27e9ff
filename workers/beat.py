"""The beat scheduler: django-celery-beat's, with every scheduled job recorded like any other.

A job started by a schedule appears in the admin as PENDING with the schedule's name as its
requester, the same way a job started by a person does. A deferred job's one-off entry
(workers/deferred.py) sends the job recorded when it was enqueued instead of a new one.
"""

from __future__ import annotations

from typing import Any

from celery.beat import SchedulingError
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from workers.celery_compat import beat_entry_arguments
from workers.deferred import DEFERRED_JOB_HEADER, deferred_job_send, is_deferred_entry
from workers.enqueue import BrokerUnavailable, Requester, job_publish, new_task_id
from workers.outbox import BROKER_ERRORS


class RecordingDatabaseScheduler(DatabaseScheduler):
    def setup_schedule(self) -> None:
        # Register every task module, so a scheduled name resolves to its Task here.
        self.app.loader.import_default_modules()
        super().setup_schedule()

    def apply_async(
        self, entry: ModelEntry, producer: Any = None, advance: bool = True, **kwargs: Any
    ) -> Any:
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
            raise SchedulingError(f"Couldn't apply scheduled task {entry.name}: {exc}") from exc
        self._sent()
        return self.app.AsyncResult(task_id)

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
