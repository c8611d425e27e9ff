"""The job log: a batching writer that redacts every line before it is stored.

Lines are buffered and written as one `JobLogChunk` row per batch: when the buffer holds
`flush_lines` lines, or when `flush_seconds` have passed since the last write, whichever
comes first. One INSERT per batch keeps a 100k-line run to a few hundred statements and
storage linear in output (the seed's approach, re-saving one growing text column per line,
is quadratic). Callers that may block between lines (a subprocess that goes quiet) call
`flush_if_due()` from their wait loop so the admin sees output within a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max

from workers.models import Job, JobLogChunk
from workers.redaction import default_redactor


class JobLogWriter:
    def __init__(
        self,
        task_id: str,
        *,
        redact: Callable[[str], str] | None = None,
        flush_lines: int | None = None,
        flush_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.task_id = task_id
        self._redact = redact if redact is not None else default_redactor()
        self._flush_lines = flush_lines or settings.JOB_LOG_FLUSH_LINES
        self._flush_seconds = (
            flush_seconds if flush_seconds is not None else settings.JOB_LOG_FLUSH_SECONDS
        )
        self._clock = clock
        self._buffer: list[str] = []
        self._partial = ""
        self._last_flush = clock()
        self._progress: tuple[int, int] | None = None
        # A redelivered task appends after what the earlier attempt wrote.
        last = JobLogChunk.objects.filter(task_id=task_id).aggregate(end=Max("end_line"))["end"]
        self.next_line: int = last or 0

    @property
    def resumed(self) -> bool:
        """True when an earlier attempt of this task already wrote lines."""
        return self.next_line > 0

    def write(self, text: str) -> None:
        """Append text; complete lines are buffered, a trailing fragment waits for its end."""
        if not text:
            return
        pieces = (self._partial + text).split("\n")
        self._partial = pieces.pop()
        self._buffer.extend(piece.rstrip("\r") for piece in pieces)
        if len(self._buffer) >= self._flush_lines:
            self.flush()
        else:
            self.flush_if_due()

    def line(self, text: str) -> None:
        self.write(text + "\n")

    def set_progress(self, done: int, total: int) -> None:
        """Report progress; stored with the next flush, not as an extra write per call."""
        self._progress = (min(done, total), total)

    def flush_if_due(self) -> None:
        if (self._buffer or self._progress) and (
            self._clock() - self._last_flush >= self._flush_seconds
        ):
            self.flush()

    def flush(self, *, final: bool = False) -> None:
        if final and self._partial:
            self._buffer.append(self._partial.rstrip("\r"))
            self._partial = ""
        if self._buffer:
            start = self.next_line
            JobLogChunk.objects.create(
                task_id=self.task_id,
                start_line=start,
                end_line=start + len(self._buffer),
                # Redacted as one text: one pass per batch instead of one per line. The
                # patterns never span a newline, so the result is the same line by line.
                text=self._redact("\n".join(self._buffer)),
            )
            self.next_line = start + len(self._buffer)
            self._buffer = []
        if self._progress is not None:
            done, total = self._progress
            Job.objects.filter(task_id=self.task_id).update(
                progress_done=done, progress_total=total
            )
            self._progress = None
        self._last_flush = self._clock()

    def close(self) -> None:
        self.flush(final=True)

    def __enter__(self) -> JobLogWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # Flushed on failure too: the lines before an error are the ones worth reading.
        if isinstance(exc, DatabaseError) and not connection.in_atomic_block:
            # The error may have broken this connection (a terminated backend): the lines
            # and the cause go out on a fresh one, or the log would end without the cause
            # and the error left would be the secondary "connection already closed".
            connection.close()
        if exc is not None:
            self.line(f"!! {exc_type.__name__ if exc_type else 'Error'}: {exc}")
        self.close()
