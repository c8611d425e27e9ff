"""The one interface every job writes its log through.

`workers.joblog.JobLogWriter` stores a job's lines (redacted, batched) for the admin's live
view; `LineCapture` keeps them in memory (a step whose output is parsed, a test). Domain code
takes a `LogSink` and never knows which.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class LogSink(Protocol):
    def write(self, text: str) -> None:
        """Text that may hold several lines or end mid-line."""

    def line(self, text: str) -> None:
        """One whole line (no newline needed)."""

    def write_block(self, text: str) -> None:
        """Whole lines at once, each ending in a newline (a read from a process)."""


class LineCapture:
    """A LogSink that keeps what it is given, line by line."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._partial = ""

    def write(self, text: str) -> None:
        *whole, self._partial = (self._partial + text).split("\n")
        self.lines.extend(whole)

    def line(self, text: str) -> None:
        self.lines.append(text)

    def write_block(self, text: str) -> None:
        self.lines.extend(text.split("\n")[:-1])

    @property
    def text(self) -> str:
        return "\n".join([*self.lines, self._partial] if self._partial else self.lines)
