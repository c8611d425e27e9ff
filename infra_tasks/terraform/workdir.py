"""Where a terraform step works on the worker: a fresh directory per step, removed after it,
and the worker's provider cache.

Nothing in these directories is needed by a later step (state and plans are in S3), so a
worker may lose them at any moment. A directory left by a process that died (SIGKILL, a
crash) is removed by the next step that starts on the same machine. It is named for its
process by id and start time: a container restarted with its disk kept (compose's
`restart:`) numbers its processes from 1 again, and a directory named by id alone, which
may hold a saved plan with variable values, was kept while another process had that id.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from django.conf import settings

from workers.streaming import process_stat

_STEP_NAME = re.compile(r"run-\d+-[a-z]+-(?P<pid>\d+)(?:\.(?P<started>\d+))?-")


@contextmanager
def step_directory(run_id: int, step: str) -> Iterator[Path]:
    """A private directory for one step, removed afterwards however the step ends."""
    base = Path(settings.TERRAFORM_WORK_DIR)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep(base)
    owner = _process_name(os.getpid())
    path = Path(tempfile.mkdtemp(prefix=f"run-{run_id}-{step}-{owner}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sweep(base: Path) -> None:
    """Remove step directories whose process is gone."""
    for entry in base.iterdir():
        match = _STEP_NAME.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match["pid"]), match["started"]):
            shutil.rmtree(entry, ignore_errors=True)


def _process_name(pid: int) -> str:
    """`pid.started` (its start in clock ticks since boot), or the id alone without /proc."""
    started = _started(pid)
    return f"{pid}.{started}" if started is not None else str(pid)


def _started(pid: int) -> int | None:
    fields = process_stat(pid)
    return None if fields is None else int(fields[19])  # field 22, starttime


def _alive(pid: int, started: str | None) -> bool:
    """Whether the process that made a directory still runs: its id, and its start time
    when the name gives one (another process may have the id now)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return started is None or _started(pid) in (None, int(started))


def plugin_cache_directory() -> Path:
    cache = Path(settings.TERRAFORM_PLUGIN_CACHE_DIR)
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    return cache


@contextmanager
def plugin_cache_lock(waiting: Callable[[], object]) -> Iterator[None]:
    """Hold the worker's provider cache for one `terraform init`.

    Terraform does not make concurrent installs into one TF_PLUGIN_CACHE_DIR safe, and a
    worker runs several steps at once. `waiting` is called while another init holds it
    (to keep the run's heartbeat going).
    """
    lock_path = plugin_cache_directory() / ".opsqueue-init.lock"
    with lock_path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waiting()
                time.sleep(0.2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(handle, fcntl.LOCK_UN)
