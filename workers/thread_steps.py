"""A worker consumer step that runs one background thread while the consumer runs.

The heartbeat recorder, the visibility extender and the queue-pause watcher each keep a
daemon thread beside Celery's consumer: started with it, asked to stop through an event,
joined (bounded) when the consumer stops or shuts down.
"""

from __future__ import annotations

import threading
from typing import Any

from celery import bootsteps
from celery.worker.consumer import Consumer


class ThreadStep(bootsteps.StartStopStep):
    """Consumer step running `_run` in a daemon thread named `thread_name`."""

    requires = ("celery.worker.consumer.connection:Connection",)
    thread_name = "consumer-step"

    def __init__(self, c: Consumer, **kwargs: Any) -> None:
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        super().__init__(c, **kwargs)

    def start(self, c: Consumer) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self, c: Consumer) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    shutdown = stop

    def _run(self) -> None:
        raise NotImplementedError
