"""A worker consumer step that runs one background thread while the consumer runs.

The heartbeat recorder, the visibility extender and the queue-pause watcher each keep a
daemon thread beside Celery's consumer: started with it, asked to stop through an event,
joined (bounded) when the consumer stops or shuts down.

A warm shutdown (SIGTERM, or the worker stopping itself when its consumer went silent)
stops the consumer first and only then waits for the pool to finish the jobs it runs. A
step with `drain` keeps its thread going through that wait, for as long as the worker still
holds a job: without it those jobs' messages and claims would lapse while they run, and
another worker would start the same job beside them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from typing import Any

from celery import bootsteps
from celery.worker import state as worker_state
from celery.worker.consumer import Consumer

logger = logging.getLogger(__name__)


def held_requests() -> list[Any]:
    """The requests this worker holds, prefetched or running.

    Not `worker_state.requests` alone: Celery keys it by task id and removes the id when any
    request with it ends. A duplicate of a running job delivered to this same worker, and
    dropped, took the running request's entry with it: its claim was no longer renewed nor
    its message extended, and the recheck the duplicate left took the job over and ran it a
    second time beside the first. The reserved and active sets hold each request itself."""
    held = {id(request): request for request in _snapshot(worker_state.requests.values())}
    for requests in (worker_state.reserved_requests, worker_state.active_requests):
        held.update((id(request), request) for request in _snapshot(requests))
    return list(held.values())


def _snapshot(requests: Iterable[Any]) -> list[Any]:
    # The event loop adds and removes requests meanwhile: a dict's values are copied without
    # releasing the GIL, a WeakSet's in Python code that may see it change size: copy again.
    for _attempt in range(10):
        try:
            return list(requests)
        except RuntimeError:
            continue
    return []


class ThreadStep(bootsteps.StartStopStep):
    """Consumer step running `_run` in a daemon thread named `thread_name`. `_run` loops
    `while self._tick(interval): ...`."""

    requires = ("celery.worker.consumer.connection:Connection",)
    thread_name = "consumer-step"
    # Keep running after the consumer stops while the worker still holds jobs.
    drain = False

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self._stopping = threading.Event()
        self._nudged = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Consumer) -> None:
        # A thread still draining from before a consumer restart sees it was replaced.
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def nudge(self) -> None:
        """End the thread's current wait: its next round starts now (from any thread)."""
        self._nudged.set()

    def stop(self, c: Consumer) -> None:
        self._stopping.set()
        self._nudged.set()
        thread = self._thread
        if thread is None:
            return
        held = held_requests()
        if self.drain and held:
            # Not joined: it ends once the last job is done, or with the process.
            logger.info(
                "%s goes on while the worker finishes %d job(s)",
                self.thread_name,
                len({request.id for request in held}),
            )
            return
        thread.join(timeout=10)
        self._thread = None

    shutdown = stop

    def _tick(self, interval: float) -> bool:
        """Wait `interval` seconds; whether the thread should go on: not asked to stop, or
        draining while the worker still holds jobs (and not replaced by a newer thread)."""
        stopping = self._stopping
        if stopping.is_set():
            time.sleep(interval)  # draining: at the usual pace
        else:
            self._nudged.wait(interval)
            self._nudged.clear()
        if self._thread is not threading.current_thread():
            return False
        if not stopping.is_set():
            return True
        return self.drain and bool(held_requests())

    def _run(self) -> None:
        raise NotImplementedError
