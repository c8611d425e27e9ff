"""Run a subprocess and stream its output into a job log, line by line.

The process runs in its own process group so a stop reaches everything it started (terraform
spawns providers; local-exec spawns shells). Stopping is graceful first: SIGINT, which lets
terraform save state and release its lock, then SIGKILL of the group after a grace period,
also when the command itself has already exited and only what it started is left. When the
command ends on its own, whatever it left behind in its group (a `cmd &`) is killed at once.
On Linux the command runs under `workers/tether.py`, which kills the group if this process
dies, so nothing outlives the worker that started it.
Celery's revoke cannot reach a task on SQS, so the caller passes `should_stop`, checked
between reads, to learn about a cancel request itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO

from django.conf import settings

from workers.joblog import cut_bytes, lines_within
from workers.logsink import LogSink


class StopReason(StrEnum):
    CANCELLED = "cancelled"
    TIMED_OUT = "timed out"


@dataclass(frozen=True)
class StreamResult:
    returncode: int
    stopped: StopReason | None
    seconds: float
    # SIGKILLed once the grace period was over: it had no chance to clean up (terraform:
    # to save its state and release its lock).
    killed: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.stopped is None


def run_streaming(
    command: Sequence[str],
    *,
    log: LogSink,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    should_stop: Callable[[], bool] | None = None,
    timeout: float | None = None,
    grace_seconds: float = 10.0,
    check_every: float = 0.5,
    on_line: Callable[[str], None] | None = None,
) -> StreamResult:
    """Run `command`, writing its stdout and stderr (merged, in order) to `log`."""
    started = time.monotonic()
    process = subprocess.Popen(
        _tethered(command),
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    assert process.stdout is not None
    stream = process.stdout
    os.set_blocking(stream.fileno(), False)
    _enlarge_pipe(stream.fileno())
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    gather = _Gather(process.pid)

    stopped: StopReason | None = None
    interrupt_sent_at: float | None = None
    killed = False
    command_ended = False
    last_check = 0.0
    lines = LineSplitter(limit=settings.JOB_LOG_MAX_LINE_BYTES)
    try:
        while True:
            for _key, _events in selector.select(timeout=min(check_every, 0.25)):
                # At most a pipeful per read: read() without a size goes on for as long as
                # the command keeps the pipe filled, so a fast writer's 50 MiB line was
                # held whole (twice, while joined) on a busy machine.
                data = stream.read(PIPE_BYTES)
                if data and len(data) < PIPE_BYTES // 2:
                    # Let output gather: a busy command's lines then cost one read, one
                    # split and one hand-over per few hundred lines, not per dozen.
                    gather.wait()
                    data += stream.read(PIPE_BYTES) or b""
                if data:
                    block = lines.feed(data)
                    if on_line is None:
                        if block:
                            log.write_block(block)
                    else:
                        for line in block.split("\n")[:-1]:
                            _deliver(line, log, on_line)
                elif data == b"":
                    selector.unregister(stream)
                    break
            _flush(log, due_only=True)
            if not selector.get_map():
                break

            now = time.monotonic()
            if stopped is None and now - last_check >= check_every:
                last_check = now
                if timeout is not None and now - started > timeout:
                    stopped = StopReason.TIMED_OUT
                elif should_stop is not None and should_stop():
                    stopped = StopReason.CANCELLED
                if stopped is not None:
                    log.line(
                        f"-- {stopped.value}: sending SIGINT, SIGKILL in {grace_seconds:g}s --"
                    )
                    _signal_group(process, signal.SIGINT)
                    interrupt_sent_at = now
            if interrupt_sent_at is not None and now - interrupt_sent_at > grace_seconds:
                log.line("-- grace period over: SIGKILL --")
                _signal_group(process, signal.SIGKILL)
                killed = True
                interrupt_sent_at = None
            elif not command_ended and _has_exited(process):
                # Something it started still holds the pipe open.
                command_ended = True
                if interrupt_sent_at is None:
                    _signal_group(process, signal.SIGKILL)
        if interrupt_sent_at is not None:
            # Stopping, and the command is gone: what it left gets the rest of the grace.
            _wait_for_group(process, until=interrupt_sent_at + grace_seconds)
            if _group_alive(process.pid):
                log.line("-- grace period over: SIGKILL --")
                killed = True
        _has_exited(process, wait=True)
        # Until it is reaped the leader's pid names this group and no other.
        _signal_group(process, signal.SIGKILL)
        returncode = process.wait()
    except Exception as exc:
        # An error of ours (a soft time limit, the database gone while a cancel was being
        # checked or the log stored) is no reason to kill terraform mid-apply: it is
        # stopped as a cancel is, SIGINT first, so that it can save its state and release
        # its lock, and SIGKILL only once the grace period is over. (A process made to exit,
        # SystemExit, has no time to wait: the group is killed at once, below.)
        if process.returncode is None and not _has_exited(process):
            _stop_on_error(process, stream, log, grace_seconds=grace_seconds, error=exc)
        raise
    finally:
        selector.close()
        gather.close()
        if process.poll() is None:
            _signal_group(process, signal.SIGKILL)
            process.wait()
        stream.close()
    last = lines.rest()
    if last is not None:
        _deliver(last, log, on_line)
    _flush(log, due_only=False)
    return StreamResult(
        returncode=returncode,
        stopped=stopped,
        seconds=time.monotonic() - started,
        killed=killed,
    )


class LineSplitter:
    """Splits a byte stream into lines in time linear in its size, holding at most `limit`
    bytes of a line that has not ended yet: a longer line comes out cut, with a marker
    saying how much was dropped (each read used to be joined to the whole unfinished line,
    quadratic in a long line's length, and all of it was kept)."""

    def __init__(self, *, limit: int) -> None:
        self._limit = limit
        self._head = bytearray()  # the unfinished line's first `limit` bytes
        self._seen = 0  # the unfinished line's length so far

    def feed(self, data: bytes) -> str:
        """The lines `data` completes, as one text with a newline after each ("" if none)."""
        end = data.rfind(b"\n")
        if end == -1:
            self._take(data)
            return ""
        parts = []
        start = 0
        if self._seen:
            start = data.find(b"\n") + 1
            self._take(data[: start - 1])
            head = cut_bytes(bytes(self._head), total=self._seen, limit=self._limit)
            parts.append(head + "\n")
            self._head.clear()
            self._seen = 0
        if start <= end:
            complete = data[start : end + 1]
            # Decoded once per read, and not split: per line only when a line may be too
            # long.
            if len(complete) <= self._limit or lines_within(complete, self._limit):
                parts.append(complete.decode("utf-8", "replace"))
            else:
                parts += [
                    cut_bytes(raw, total=len(raw), limit=self._limit) + "\n"
                    for raw in complete[:-1].split(b"\n")
                ]
        self._take(data[end + 1 :])
        return "".join(parts)  # one part: returned as it is, not copied

    def rest(self) -> str | None:
        """The last line, if the stream did not end with a newline."""
        if not self._seen:
            return None
        return cut_bytes(bytes(self._head), total=self._seen, limit=self._limit)

    def _take(self, data: bytes) -> None:
        room = self._limit - len(self._head)
        if room > 0:
            self._head += data[:room]
        self._seen += len(data)


def _flush(log: LogSink, *, due_only: bool) -> None:
    """A sink that batches its lines (JobLogWriter) is flushed; one that keeps them in
    memory (LineCapture) has nothing to flush."""
    flush = getattr(log, "flush_if_due" if due_only else "flush", None)
    if flush is not None:
        flush()


def _deliver(line: str, log: LogSink, on_line: Callable[[str], None] | None) -> None:
    if on_line is not None:
        on_line(line)
    log.line(line)


def _stop_on_error(
    process: subprocess.Popen[bytes],
    stream: IO[bytes],
    log: LogSink,
    *,
    grace_seconds: float,
    error: BaseException,
) -> None:
    """SIGINT the group, give it the grace period (its output still read, so it never blocks
    on a full pipe, and logged while the log can take it), then SIGKILL what is left."""
    logging = True

    def note(text: str) -> None:
        nonlocal logging
        if logging:
            try:
                log.line(text)
            except Exception:  # the log may be what failed: the output is still drained
                logging = False

    note(
        f"-- stopped by an error ({error.__class__.__name__}): sending SIGINT, "
        f"SIGKILL in {grace_seconds:g}s --"
    )
    _signal_group(process, signal.SIGINT)
    until = time.monotonic() + grace_seconds
    output = select.poll()
    output.register(stream, select.POLLIN)
    while time.monotonic() < until and _group_alive(process.pid):
        if not output.poll(100):
            continue
        data = stream.read(PIPE_BYTES)
        if data == b"":  # the pipe is closed: what is left is only waited for
            output.unregister(stream)
            output.poll(100)
        for text in (data or b"").decode("utf-8", "replace").splitlines():
            note(text)
    if _group_alive(process.pid):
        note("-- grace period over: SIGKILL --")
    _signal_group(process, signal.SIGKILL)


def _signal_group(process: subprocess.Popen[bytes], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


# The pipe holds this much (Linux's default is 64 KiB), so that a pause to let output
# gather never blocks the command.
PIPE_BYTES = 1 << 20
GATHER_SECONDS = 0.02


class _Gather:
    """The pause that lets output gather, cut short when the command exits: its last lines
    then come out at once, and a short command does not end GATHER_SECONDS late (a plan
    step streams init, plan and show, each of which paid it)."""

    def __init__(self, pid: int) -> None:
        self._exited: int | None = None
        # poll, not select: a worker holding over 1,024 descriptors could not select on it.
        self._poll = select.poll()
        with contextlib.suppress(AttributeError, OSError):  # no pidfd before Linux 5.3
            self._exited = os.pidfd_open(pid)  # readable once the leader has exited
            self._poll.register(self._exited, select.POLLIN)

    def wait(self) -> None:
        if self._exited is None:
            time.sleep(GATHER_SECONDS)
        else:
            self._poll.poll(GATHER_SECONDS * 1000)

    def close(self) -> None:
        if self._exited is not None:
            os.close(self._exited)
            self._exited = None


def _enlarge_pipe(fd: int) -> None:
    set_size = getattr(fcntl, "F_SETPIPE_SZ", None)
    if set_size is not None:
        with contextlib.suppress(OSError):  # above /proc/sys/fs/pipe-max-size
            fcntl.fcntl(fd, set_size, PIPE_BYTES)


TETHER = Path(__file__).with_name("tether.py")


def _tethered(command: Sequence[str]) -> list[str]:
    if sys.platform != "linux":
        return list(command)  # no parent-death signal elsewhere
    return [sys.executable, "-I", "-S", str(TETHER), str(os.getpid()), "--", *command]


def _has_exited(process: subprocess.Popen[bytes], *, wait: bool = False) -> bool:
    """Whether the group's leader has exited, without reaping it (WNOWAIT)."""
    options = os.WEXITED | os.WNOWAIT | (0 if wait else os.WNOHANG)
    return os.waitid(os.P_PID, process.pid, options) is not None


def _wait_for_group(process: subprocess.Popen[bytes], *, until: float) -> None:
    while time.monotonic() < until and _group_alive(process.pid):
        time.sleep(0.1)


def _group_alive(pgid: int) -> bool:
    """Whether any process of the group is still running (zombies do not count)."""
    if not os.path.isdir("/proc"):
        return False
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = process_stat(int(entry.name))
        if fields is None:
            continue
        state, _ppid, pgrp = fields[:3]
        if int(pgrp) == pgid and state != "Z":
            return True
    return False


def process_stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name, the state first (field 3),
    or None without such a process or /proc. The name may itself hold spaces or
    parentheses: the fields start after its last ')'."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()
