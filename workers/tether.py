"""Run a command tied to the life of the process that started it (Linux).

    python -I -S workers/tether.py PARENT_PID -- COMMAND [ARG...]

`workers.streaming` starts every command through this small supervisor, as the leader of a
new process group that the command and everything it spawns join. If the worker process
that started it dies, even by SIGKILL, the kernel sends this supervisor SIGTERM
(PR_SET_PDEATHSIG) and it SIGKILLs the whole group, itself included: terraform and the
children of its local-exec provisioners go with the worker instead of running on with
their state lock. The death signal goes to this process only, which is why it cannot be set
on the command itself: the command's children would survive it.

The death signal follows the thread that started this process: run_streaming runs in the
task's thread, which in Celery's prefork pool is the pool process's own.

SIGINT sent to the group (a cancel) is meant for the command; this process ignores it and
keeps watching. It exits with the command's status (128 + N when a signal N ended it).
Standard library only, run isolated (-I -S), forking the command itself rather than
importing `subprocess` (a sixth of its start), and taking `_signal` rather than `signal`,
whose enums cost a quarter of it: from start to the command's exit, `true` takes 11 ms under
it (14 with `signal`, 16.5 with subprocess too), and every terraform command a worker streams
pays it.
"""

from __future__ import annotations

import _signal as signal  # the C module alone: see above
import ctypes
import os
import sys
from types import FrameType

PR_SET_PDEATHSIG = 1


def _kill_group(signum: int, frame: FrameType | None) -> None:
    os.killpg(0, signal.SIGKILL)


def _ignore(signum: int, frame: FrameType | None) -> None:
    # A handler rather than SIG_IGN: an ignored disposition would be inherited by the command.
    return None


def _exec(command: list[str]) -> None:
    """In the forked child: become the command, or exit 127 saying why it cannot run."""
    # Python ignores SIGPIPE and SIGXFSZ, and an ignored signal stays ignored across exec:
    # the command gets the defaults back, as subprocess gives them. (Not posix_spawn: glibc's
    # leaves its own internal signals ignored in the command.)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)
    try:
        os.execvp(command[0], command)  # noqa: S606 (an argument list, as subprocess runs it)
    except OSError as exc:
        os.write(2, f"tether: cannot run {command[0]}: {exc.strerror}\n".encode())
    os._exit(127)


def main(argv: list[str]) -> int:
    if len(argv) < 4 or argv[2] != "--":
        print("usage: tether.py PARENT_PID -- COMMAND [ARG...]", file=sys.stderr)
        return 64
    parent, command = int(argv[1]), argv[3:]
    signal.signal(signal.SIGTERM, _kill_group)
    signal.signal(signal.SIGINT, _ignore)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        print(f"tether: prctl failed: {os.strerror(ctypes.get_errno())}", file=sys.stderr)
        return 70
    if os.getppid() != parent:
        # The parent died before the death signal was armed: nothing would deliver it.
        return 75
    pid = os.fork()
    if pid == 0:
        _exec(command)
    returncode = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    # os._exit: no interpreter shutdown between the command's end and this exit, so the
    # pipe the parent reads closes only once the status is final.
    os._exit(returncode if returncode >= 0 else 128 - returncode)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
