"""workers/tether.py: a command and everything it started die with the process that ran it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

from tests.support.servers import wait_until
from tests.workers.test_streaming import alive
from workers.streaming import TETHER


def tethered(*command: str) -> list[str]:
    return [sys.executable, "-I", "-S", str(TETHER), str(os.getpid()), "--", *command]


def test_the_command_and_its_children_are_killed_when_the_parent_is_sigkilled(
    tmp_path: Path,
) -> None:
    pids_file = tmp_path / "pids"
    # The parent starts the tethered shell the way run_streaming does, then waits.
    parent_code = (
        "import os, subprocess, sys, time\n"
        f"subprocess.Popen([sys.executable, '-I', '-S', {str(TETHER)!r}, str(os.getpid()), '--',"
        f" 'sh', '-c', 'trap \"\" INT TERM; sleep 300 & echo $$ $! > {pids_file}; wait'],"
        " start_new_session=True)\n"
        "time.sleep(300)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", parent_code], start_new_session=True)
    pids: list[int] = []
    try:
        wait_until(lambda: pids_file.exists() and pids_file.read_text().strip(), timeout=30)
        pids = [int(pid) for pid in pids_file.read_text().split()]
        assert len(pids) == 2 and alive(pids) == pids

        os.killpg(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        wait_until(
            lambda: not alive(pids), timeout=15, message="the shell and its child to be killed"
        )
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(parent.pid, signal.SIGKILL)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_exit_status_is_the_commands() -> None:
    assert subprocess.run(tethered("sh", "-c", "exit 7"), check=False).returncode == 7
    ended_by_signal = subprocess.run(tethered("sh", "-c", "kill -TERM $$"), check=False)
    assert ended_by_signal.returncode == 128 + signal.SIGTERM


def test_a_command_that_cannot_run_exits_127_saying_why() -> None:
    ran = subprocess.run(tethered("no-such-command-here"), capture_output=True, text=True)
    assert ran.returncode == 127
    assert ran.stderr == "tether: cannot run no-such-command-here: No such file or directory\n"


def ignored_signals(command: list[str]) -> int:
    """The mask of signals `command` starts with ignored."""
    shown = subprocess.run(command, capture_output=True, text=True, check=True)
    return int(shown.stdout.split()[1], 16)


def bit(signum: int) -> int:
    return 1 << (signum - 1)


def test_the_command_starts_with_the_signals_subprocess_would_give_it() -> None:
    """Python ignores SIGPIPE and SIGXFSZ, and subprocess gives a command their defaults back:
    one that inherited SIGPIPE ignored would not die of a closed pipe. (glibc's posix_spawn
    would leave its own internal signals ignored too.) What this process's own parent
    ignores (SIGHUP under nohup) stays ignored, as subprocess leaves it, but for SIGINT and
    SIGTERM, which the tether handles: the command always gets SIGINT, a cancel, even when
    the worker was started in the background with SIGINT ignored."""
    show = ["sh", "-c", "grep SigIgn /proc/self/status"]
    through_tether = ignored_signals(tethered(*show))
    handled = bit(signal.SIGINT) | bit(signal.SIGTERM)
    assert through_tether & ~handled == ignored_signals(show) & ~handled
    assert not through_tether & (bit(signal.SIGPIPE) | bit(signal.SIGINT))


def test_sigint_to_the_group_reaches_the_command_and_not_the_tether(tmp_path: Path) -> None:
    script = "trap 'echo interrupted; exit 5' INT; echo ready; while :; do sleep 0.05; done"
    process = subprocess.Popen(
        tethered("sh", "-c", script), stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "ready"
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=15) == 5, "the tether outlived SIGINT and kept the status"
        assert process.stdout.read().strip() == "interrupted"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
