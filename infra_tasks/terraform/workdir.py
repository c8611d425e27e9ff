"""Where a terraform step works on the worker: a fresh directory per step, removed after it,
and the worker's provider cache.

Nothing in these directories is needed by a later step (state and plans are in S3), so a
worker may lose them at any moment. A directory left by a process that died (SIGKILL, a
crash) is removed by the next step that starts on the same machine.
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

_STEP_NAME = re.compile(r"run-\d+-[a-z]+-(?P<pid>\d+)-")


@contextmanager
def step_directory(run_id: int, step: str) -> Iterator[Path]:
    """A private directory for one step, removed afterwards however the step ends."""
    base = Path(settings.TERRAFORM_WORK_DIR)
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    _sweep(base)
    path = Path(tempfile.mkdtemp(prefix=f"run-{run_id}-{step}-{os.getpid()}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _sweep(base: Path) -> None:
    """Remove step directories whose process is gone."""
    for entry in base.iterdir():
        match = _STEP_NAME.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match["pid"])):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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
