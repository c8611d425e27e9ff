"""run_streaming stops whole process trees: real shells whose children ignore SIGINT or are
left running in the background. No database: the log here keeps lines in memory."""

from __future__ import annotations

import contextlib
import os
import random
import resource
import signal
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from tests.support.servers import wait_until
from workers.joblog import JobLogWriter, cut_bytes
from workers.streaming import (
    LineSplitter,
    StopReason,
    StreamResult,
    process_stat,
    run_streaming,
)


class MemoryLog(JobLogWriter):
    def __init__(self) -> None:  # no database: nothing of the writer's state is used
        self.lines: list[str] = []

    def line(self, text: str) -> None:
        self.lines.append(text)

    def write(self, text: str) -> None:
        self.lines.extend(text.splitlines())

    def flush_if_due(self) -> None:
        return None

    def flush(self, *, final: bool = False) -> None:
        return None


def running(pid: int) -> bool:
    """Alive and not a zombie (an orphan is reaped by whoever adopts it, maybe later)."""
    fields = process_stat(pid)
    return fields is not None and fields[0] != "Z"


class Tree:
    """A shell that prints `pids <its pid> <child pid>` and what it does to stop."""

    def __init__(self, script: str) -> None:
        self.command = ["sh", "-c", script]
        self.pids: list[int] = []
        self.log = MemoryLog()

    def on_line(self, line: str) -> None:
        if line.startswith("pids "):
            self.pids.extend(int(pid) for pid in line.split()[1:])

    def run(
        self, *, should_stop: Callable[[], bool] | None, within: float = 60.0, **options: float
    ) -> StreamResult:
        """run_streaming in a thread: a stop that never comes must fail the test, not hang it."""
        outcome: list[StreamResult] = []
        thread = threading.Thread(
            target=lambda: outcome.append(
                run_streaming(
                    self.command,
                    log=self.log,
                    should_stop=should_stop,
                    check_every=0.1,
                    on_line=self.on_line,
                    **options,  # type: ignore[arg-type]
                )
            ),
            daemon=True,
        )
        thread.start()
        thread.join(timeout=within)
        assert outcome, f"run_streaming was still waiting after {within:g}s: {self.log.lines}"
        return outcome[0]

    def kill_leftovers(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def alive(pids: Sequence[int]) -> list[int]:
    return [pid for pid in pids if running(pid)]


def gone(pids: Sequence[int]) -> bool:
    """Every pid ends soon: SIGKILL is delivered asynchronously, dying takes a moment."""
    wait_until(lambda: not alive(pids), timeout=10, message=f"{alive(pids)} to end")
    return True


def test_a_tree_that_ignores_sigint_is_killed_after_the_grace_period() -> None:
    tree = Tree("trap '' INT; sleep 300 & echo pids $$ $!; wait")
    try:
        result = tree.run(should_stop=lambda: bool(tree.pids), grace_seconds=1)
        assert result.stopped == StopReason.CANCELLED and not result.ok
        assert result.killed, "SIGKILLed: it had no chance to clean up"
        assert len(tree.pids) == 2
        assert gone(tree.pids), "the shell and its child are gone"
        assert "-- grace period over: SIGKILL --" in tree.log.lines
    finally:
        tree.kill_leftovers()


def test_what_a_stopped_command_leaves_behind_is_killed_when_the_grace_period_ends() -> None:
    # The shell exits on SIGINT at once; its background child ignores SIGINT and lives on.
    tree = Tree("(trap '' INT; exec sleep 300) & echo pids $!; wait")
    try:
        result = tree.run(should_stop=lambda: bool(tree.pids), grace_seconds=1)
        assert result.stopped == StopReason.CANCELLED
        assert len(tree.pids) == 1
        assert gone(tree.pids), "the child outlived the stopped command"
    finally:
        tree.kill_leftovers()


def test_a_background_child_of_a_command_that_succeeded_is_killed_and_the_status_kept() -> None:
    tree = Tree("sleep 300 >/dev/null 2>&1 & echo pids $!; exit 3")
    try:
        result = tree.run(should_stop=None)
        assert (result.returncode, result.stopped) == (3, None)
        assert len(tree.pids) == 1 and gone(tree.pids)
    finally:
        tree.kill_leftovers()


def test_a_background_child_holding_the_output_open_does_not_hold_up_the_run() -> None:
    tree = Tree("sleep 300 & echo pids $!; echo done")
    try:
        result = tree.run(should_stop=None, within=30)
        assert result.returncode == 0
        assert "done" in tree.log.lines and gone(tree.pids)
    finally:
        tree.kill_leftovers()


def test_the_pause_that_lets_output_gather_ends_when_the_command_exits(
    monkeypatch: Any,
) -> None:
    # A pause long enough that waiting it out is unmistakable: the command's last line
    # comes out, and the run ends, once the command has exited.
    monkeypatch.setattr("workers.streaming.GATHER_SECONDS", 120)
    log = MemoryLog()
    result = run_streaming(["sh", "-c", "echo last"], log=log, timeout=300)
    assert result.ok and log.lines == ["last"]
    assert result.seconds < 60


def test_a_worker_holding_over_1024_descriptors_still_streams_a_command() -> None:
    # select() cannot watch a descriptor numbered 1,024 or above; a worker holding many
    # connections and files gets such numbers for the pipe and the command's pidfd.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 4096)), hard))
    held: list[int] = []
    try:
        while not held or held[-1] < 1100:
            held.append(os.open(os.devnull, os.O_RDONLY))
        log = MemoryLog()
        result = run_streaming(["sh", "-c", "echo one; echo two"], log=log, timeout=60)
        assert result.ok and log.lines == ["one", "two"]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_what_a_stopped_command_leaves_behind_gets_the_grace_period_to_clean_up(
    tmp_path: Path,
) -> None:
    # A child with its own SIGINT handler that needs a moment, not holding the output open:
    # the command's end is no reason to cut its cleanup short.
    child = (
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        "    time.sleep(0.5)\n"
        "    pathlib.Path('cleaned').write_text('yes')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "pathlib.Path('ready').write_text('yes')\n"
        "time.sleep(300)\n"
    )
    (tmp_path / "child.py").write_text(child)
    tree = Tree(
        f"cd {tmp_path}; {sys.executable} child.py >/dev/null 2>&1 & "
        "while [ ! -f ready ]; do sleep 0.05; done; echo pids $!; sleep 300"
    )
    try:
        result = tree.run(should_stop=lambda: bool(tree.pids), grace_seconds=10)
        assert result.stopped == StopReason.CANCELLED
        assert (tmp_path / "cleaned").read_text() == "yes"
        assert gone(tree.pids)
    finally:
        tree.kill_leftovers()


class DatabaseAway(Exception):
    pass


def test_an_error_of_the_caller_mid_run_stops_the_command_as_a_cancel_does(
    tmp_path: Path,
) -> None:
    # A cancel check that fails (the database away) or a soft time limit must not SIGKILL
    # terraform mid-apply: it gets SIGINT and the grace period to save its state first.
    (tmp_path / "cleanup.py").write_text(
        "import pathlib, signal, sys, time\n"
        "def stop(*_):\n"
        "    print('interrupted, saving state', flush=True)\n"
        "    time.sleep(0.5)\n"
        "    pathlib.Path('cleaned').write_text('yes')\n"
        "    sys.exit(1)\n"
        "signal.signal(signal.SIGINT, stop)\n"
        "print('started', flush=True)\n"
        "time.sleep(300)\n"
    )
    log = MemoryLog()

    def should_stop() -> bool:
        if "started" in log.lines:
            raise DatabaseAway("the cancel flag could not be read")
        return False

    started = time.monotonic()
    with contextlib.suppress(DatabaseAway):
        run_streaming(
            [sys.executable, "cleanup.py"],
            log=log,
            cwd=tmp_path,
            should_stop=should_stop,
            check_every=0.1,
            grace_seconds=10,
        )
        raise AssertionError("the caller's error was not raised")
    assert (tmp_path / "cleaned").read_text() == "yes", log.lines
    assert time.monotonic() - started < 10, "it ended on SIGINT, not at the grace's end"
    assert "-- stopped by an error (DatabaseAway): sending SIGINT, SIGKILL in 10s --" in (log.lines)
    assert "interrupted, saving state" in log.lines, "its output during the grace is logged"


def test_a_command_that_ignores_sigint_after_an_error_is_killed_when_the_grace_ends() -> None:
    log = MemoryLog()

    def should_stop() -> bool:
        if "started" in log.lines:
            raise DatabaseAway("the cancel flag could not be read")
        return False

    with contextlib.suppress(DatabaseAway):
        run_streaming(
            ["sh", "-c", "trap '' INT; echo started; sleep 300"],
            log=log,
            should_stop=should_stop,
            check_every=0.1,
            grace_seconds=1,
        )
        raise AssertionError("the caller's error was not raised")
    assert "-- grace period over: SIGKILL --" in log.lines


# Prints `argv[1]` MiB of "x" as one line, a MiB per write, then one more line.
ONE_LONG_LINE = (
    "import sys\n"
    "out = sys.stdout.buffer\n"
    "for _ in range(int(sys.argv[1])):\n"
    "    out.write(b'x' * (1 << 20))\n"
    "out.write(b'\\nafter\\n')\n"
)


def log_path_cost(mebibytes: int) -> tuple[float, int, list[str]]:
    """This process's CPU seconds and peak Python memory streaming one line of that size."""
    log = MemoryLog()
    tracemalloc.start()
    try:
        cpu = time.process_time()
        result = run_streaming(
            [sys.executable, "-c", ONE_LONG_LINE, str(mebibytes)], log=log, timeout=300
        )
        cpu = time.process_time() - cpu
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.ok, result
    return cpu, peak, log.lines


def test_one_50_mb_line_costs_time_and_memory_per_byte_within_3x_of_a_5_mb_line(
    settings: Any,
) -> None:
    small_cpu, small_peak, _ = log_path_cost(5)
    big_cpu, big_peak, lines = log_path_cost(50)

    # Ratios of this process's own costs, per byte of output: linear, not quadratic.
    assert big_cpu / 50 <= 3 * small_cpu / 5, (small_cpu, big_cpu)
    assert big_peak / 50 <= 3 * small_peak / 5, (small_peak, big_peak)
    # What reaches the log is cut to the limit, saying how much was dropped.
    limit = settings.JOB_LOG_MAX_LINE_BYTES
    cut, after = lines
    assert after == "after"
    assert len(cut.encode()) <= limit and cut.startswith("x" * (limit // 2))
    kept = len(cut.split(" ")[0])
    assert cut.endswith(f"{50 * 2**20 - kept:,} more bytes not stored; limit {limit:,}]")


def test_200k_lines_come_out_whole_and_in_order() -> None:
    log = MemoryLog()
    script = "import sys\nsys.stdout.write(''.join(f'line {n}\\n' for n in range(200_000)))\n"
    result = run_streaming([sys.executable, "-c", script], log=log, timeout=300)
    assert result.ok
    assert log.lines == [f"line {n}" for n in range(200_000)]


def test_reads_cut_anywhere_come_out_as_the_lines_they_complete() -> None:
    limit = 100
    rng = random.Random(5)
    lines = [
        rng.choice([b"short", b"\xc3\xa9" * 30, b"x" * 250, b"bad \xff byte", b""]) + b"%d" % n
        for n in range(2000)
    ]
    stream = b"".join(line + b"\n" for line in lines) + b"y" * 130
    splitter = LineSplitter(limit=limit)
    text = ""
    at = 0
    while at < len(stream):
        size = rng.choice([1, 7, 300, 5000])
        text += splitter.feed(stream[at : at + size])
        at += size
    last = splitter.rest()

    expected = [cut_bytes(line, total=len(line), limit=limit) for line in lines]
    assert text == "".join(line + "\n" for line in expected)
    assert last == cut_bytes(b"y" * 130, total=130, limit=limit)
