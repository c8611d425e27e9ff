"""What a job is for: the domain record behind it (a terraform run, a database action, a
release, a course cover), so a job's page links to that record and shows its state.

Each app registers a finder for its task names in its AppConfig.ready(); the job pages ask
only the finder of the job's own task (one query), and know nothing of the apps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from workers.job_registry import task_name_lookup


@dataclass(frozen=True)
class JobSubject:
    """The record a job works on, as its job page shows it."""

    label: str  # "Terraform run #5 (demo, plan and apply)"
    url: str  # the record's admin page
    state: str  # the record's own state, in its words: "Planned: needs approval"
    message: str = ""  # what the record says about how it went


SubjectFinder = Callable[[str], JobSubject | None]

_finders: dict[str, SubjectFinder] = {}


def job_subject_register(task_names: Iterable[str], finder: SubjectFinder) -> None:
    """Register `finder(task_id)` for jobs of these tasks (called from AppConfig.ready)."""
    for name in task_names:
        _finders[name] = finder


def job_subject_get(*, task_name: str | None, task_id: str) -> JobSubject | None:
    finder = task_name_lookup(_finders, task_name)
    return finder(task_id) if finder is not None else None
