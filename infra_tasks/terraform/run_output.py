"""A terraform process as a worker step sees it: its output logged (`RunLog`) or captured
(`capture_json`), its run's heartbeat and cancel flag read while it runs (`RunWatch`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from django.utils import timezone

from infra_tasks.terraform import cli
from infra_tasks.terraform.models import TerraformRun
from workers.joblog import JobLogWriter
from workers.logsink import LineCapture, LogSink
from workers.redaction import default_redactor
from workers.streaming import StreamResult, run_streaming

LOG_BATCH_LINES = 2000


class RunLog(JobLogWriter):
    """The job log of a terraform step: `-json` events are stored as their messages and
    counted for progress; plain lines pass through. Secrets are added once resolved."""

    def __init__(self, task_id: str) -> None:
        self.redactor = default_redactor()
        # Terraform can print thousands of lines a second; it blocks on a full pipe while
        # a batch is being inserted, so batches are larger than the default. The time-based
        # flush still makes every line readable within a fraction of a second.
        super().__init__(
            task_id,
            redact=lambda line: self.redactor(line),
            flush_lines=LOG_BATCH_LINES,
            hold_while_database_away=True,
        )
        self.progress: cli.Progress | None = None
        self._tail: list[str] = []
        # Text is handed to the writer a read's worth at a time (run_streaming calls
        # flush_if_due after each read), each piece ending in a newline.
        self._pending: list[str] = []

    def line(self, text: str) -> None:
        event = cli.parse_event(text)
        if event is not None:
            if self.progress is not None and self.progress.feed(event):
                self.set_progress(self.progress.done, self.progress.total)
            if event.type == "version":
                return
            text = cli.event_text(event)
            if event.data.get("@level") == "error":
                self._tail = [*self._tail[-4:], self.redactor(text)]
        self._pending.append(text + "\n")

    def write_block(self, text: str) -> None:
        # A read's worth at once: plain events become their messages in one regex pass,
        # and only lines still starting with `{"` (other events, escaped messages) are
        # looked at one by one. A busy apply's read is then handled without a Python loop.
        text = cli.plain_event_messages(text)
        if not (text.startswith('{"') or '\n{"' in text):
            self._pending.append(text)
            return
        pending = self._pending
        for line in text.split("\n")[:-1]:
            message = cli.plain_event_message(line) if line.startswith("{") else line
            if message is None:
                self.line(line)  # an event the summary or the progress count needs
            else:
                pending.append(message + "\n")

    def _hand_over(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, []
            super().write("".join(pending))  # one piece: passed on as it is, not copied

    def flush_if_due(self) -> None:
        self._hand_over()
        super().flush_if_due()

    def flush(self, *, final: bool = False) -> None:
        self._hand_over()
        super().flush(final=final)

    def saw(self, needle: str) -> bool:
        return any(needle in text for text in self._tail)

    @property
    def errors(self) -> list[str]:
        return list(self._tail)


class RunWatch:
    """`should_stop` for run_streaming: beats the run's heartbeat and reads its cancel flag."""

    def __init__(self, run_id: int) -> None:
        self.run_id = run_id
        self._last_beat = time.monotonic()

    def __call__(self) -> bool:
        try:
            now = time.monotonic()
            if now - self._last_beat >= settings.TERRAFORM_HEARTBEAT_SECONDS:
                TerraformRun.objects.filter(pk=self.run_id).update(heartbeat_at=timezone.now())
                self._last_beat = now
            return TerraformRun.objects.filter(
                pk=self.run_id, cancel_requested_at__isnull=False
            ).exists()
        except DatabaseError:
            # The database is away (a failover, a dropped connection): terraform goes on,
            # and both are asked again at the next check on a fresh connection. Stopping
            # terraform mid-apply for it would be the one outcome worse than waiting.
            if not connection.in_atomic_block:
                connection.close()
            return False


def stream(
    command: list[str],
    log: LogSink,
    directory: Path,
    env: dict[str, str],
    watch: RunWatch,
    deadline: float,
) -> StreamResult:
    """Run a terraform command into the step's log, stopped at the run's deadline or cancel."""
    return run_streaming(
        command,
        log=log,
        cwd=directory,
        env=env,
        should_stop=watch,
        timeout=max(deadline - time.monotonic(), 0.1),
        grace_seconds=settings.TERRAFORM_CANCEL_GRACE_SECONDS,
    )


def capture_json(
    command: list[str], directory: Path, env: dict[str, str], watch: RunWatch
) -> dict[str, Any] | None:
    """The JSON document a command prints, kept out of the log: `show -json` and
    `output -json` print variable and output values, sensitive ones included."""
    sink = LineCapture()
    result = run_streaming(
        command,
        log=sink,
        cwd=directory,
        env=env,
        should_stop=watch,
        timeout=120,
        grace_seconds=settings.TERRAFORM_CANCEL_GRACE_SECONDS,
    )
    if not result.ok:
        return None
    # The JSON document (one line for `show`, indented for `output`) after any warnings.
    starts = [i for i, line in enumerate(sink.lines) if line.startswith("{")]
    if not starts:
        return None
    try:
        parsed, _end = json.JSONDecoder().raw_decode("\n".join(sink.lines[starts[0] :]))
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def failure_text(step: str, log: RunLog) -> str:
    errors = log.errors
    return f"{step} failed: {errors[-1]}" if errors else f"{step} failed; see the log."
