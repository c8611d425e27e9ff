"""How jobs read to a person: state names, families, durations, arguments. Pure: no Django.

The same words are used on every page (Jobs home, job list, job page, the live summary of a
terraform run or a database action), so a job never reads differently in two places.
"""

from __future__ import annotations

import ast
import json
from typing import Any

from workers.families import family_for_task
from workers.job_registry import canonical_name


def counted(n: int, singular: str, plural: str | None = None) -> str:
    """'1 course', '3 courses', '2 quizzes': a count in words that agree with it."""
    return f"{n:,} {singular if n == 1 else (plural or singular + 's')}"


FINISHED_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})

# Celery's state names stay visible (they are what Flower and the logs say); the words say
# what they mean. REVOKED is how a cancelled job ends, whoever cancelled it.
STATE_LABELS = {
    "PENDING": "Queued",
    "RECEIVED": "Received by a worker",
    "STARTED": "Running",
    "RETRY": "Waiting to retry",
    "SUCCESS": "Succeeded",
    "FAILURE": "Failed",
    "REVOKED": "Cancelled",
}


def state_label(status: str) -> str:
    """'Running (STARTED)': the meaning first, Celery's name in brackets."""
    label = STATE_LABELS.get(status)
    return f"{label} ({status})" if label else status or "Unknown"


def job_family(task_name: str | None) -> str:
    """The family a person knows the job by (what they went to the admin to do)."""
    family = family_for_task(task_name)
    return family.name if family else "Other"


def task_short_name(task_name: str | None) -> str:
    """The function name of a task: 'run_plan_execute' for infra_tasks.terraform.tasks.…
    (its current name, for a row written under a former one)."""
    return canonical_name(task_name or "?").rsplit(".", 1)[-1]


def duration_text(seconds: float | None) -> str:
    """A duration as a person reads it: '0.4 s', '12.0 s', '3 min 04 s', '2 h 05 min'."""
    if seconds is None:
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 0.1:
        return "< 0.1 s"
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def arguments_text(task_args: str | None, task_kwargs: str | None) -> str:
    """A job's arguments as written in a call: '2', "7, 'stop'", 'course_id=3'.

    The enqueue path stores JSON (`[2]`); a worker's result backend overwrites it with the
    JSON-encoded repr Celery keeps (`"(2,)"`). Both read the same here.
    """
    parts = [repr(value) for value in _decoded(task_args, ())]
    kwargs = _decoded(task_kwargs, {})
    if isinstance(kwargs, dict):
        parts += [f"{key}={value!r}" for key, value in kwargs.items()]
    return ", ".join(parts) or "none"


def arguments_decoded(
    task_args: str | None, task_kwargs: str | None
) -> tuple[list[Any], dict[str, Any]]:
    """A job's stored arguments as values again (to run it with the same ones)."""
    return list(_decoded(task_args, ())), dict(_decoded(task_kwargs, {}))


def _decoded(stored: str | None, empty: Any) -> Any:
    if not stored:
        return empty
    try:
        value = json.loads(stored)
    except ValueError:
        value = stored
    if isinstance(value, str):
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return [value] if isinstance(empty, tuple) else {}
    if isinstance(empty, tuple) and isinstance(value, list | tuple):
        return value
    if isinstance(empty, dict) and isinstance(value, dict):
        return value
    return [value] if isinstance(empty, tuple) else {}
