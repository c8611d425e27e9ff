"""A terraform step's directory on the worker: private, removed after the step, and one left
by a process that is gone removed by the next step, also when its process id was reused."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

from infra_tasks.terraform import workdir
from workers.streaming import process_stat


def own_start() -> int:
    fields = process_stat(os.getpid())
    assert fields is not None
    return int(fields[19])  # field 22, starttime


def left_behind(base: Path, name: str) -> Path:
    directory = base / name
    directory.mkdir(parents=True)
    (directory / "plan.tfplan").write_bytes(b"a saved plan, variable values and all")
    return directory


def test_a_step_directory_is_named_for_its_process_and_removed_after_it(
    settings: Any, tmp_path: Path
) -> None:
    settings.TERRAFORM_WORK_DIR = str(tmp_path)
    with workdir.step_directory(7, "plan") as step:
        assert step.name.startswith(f"run-7-plan-{os.getpid()}.{own_start()}-")
        assert oct(step.stat().st_mode & 0o777) == oct(0o700)
    assert not step.exists()


def test_a_directory_whose_process_is_gone_is_removed_by_the_next_step(
    settings: Any, tmp_path: Path
) -> None:
    settings.TERRAFORM_WORK_DIR = str(tmp_path)
    child = subprocess.Popen(["true"])
    child.wait()  # reaped: its id names no process now
    gone_pid = child.pid
    old_style = left_behind(tmp_path, f"run-1-apply-{gone_pid}-abc123")
    new_style = left_behind(tmp_path, f"run-2-apply-{gone_pid}.12345-abc123")

    with workdir.step_directory(3, "plan"):
        assert not old_style.exists() and not new_style.exists()


def test_a_directory_whose_process_id_another_process_now_has_is_removed(
    settings: Any, tmp_path: Path
) -> None:
    # A container restarted with its disk kept numbers its processes from 1 again: the id in
    # the name is alive, but it is another process (another start time).
    settings.TERRAFORM_WORK_DIR = str(tmp_path)
    reused = left_behind(tmp_path, f"run-1-apply-{os.getpid()}.{own_start() + 1}-abc123")

    with workdir.step_directory(2, "plan"):
        assert not reused.exists()


def test_a_directory_of_a_step_still_running_is_kept(settings: Any, tmp_path: Path) -> None:
    settings.TERRAFORM_WORK_DIR = str(tmp_path)
    running = left_behind(tmp_path, f"run-1-apply-{os.getpid()}.{own_start()}-abc123")
    # Named before start times were part of the name: the id alone decides.
    older = left_behind(tmp_path, f"run-2-apply-{os.getpid()}-abc123")

    with workdir.step_directory(3, "plan"):
        assert running.exists() and older.exists()
