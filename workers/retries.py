"""Whether a job may be retried: each family declares it for its own tasks.

A retry is a new job with the same arguments. That is harmless for a task that re-reads its
row and does idempotent work (a cover's variants, a diagnostic run), and wrong for one whose
arguments name a step that must not happen twice (a terraform apply of a saved plan: plan
again instead). Each app declares its tasks in its AppConfig.ready(); a task nobody declared
is not retried.

A task safe to retry may still name failures that a retry meets again: its input was refused
(a picture that is no picture). A job that ended on one of those is not retried either; the
declaration says what to do instead (upload another picture).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass

from workers.job_registry import task_name_lookup


@dataclass(frozen=True)
class RetryRule:
    safe: bool
    # Why not, and what to do instead: shown to the person who asked for the retry.
    refusal: str = ""
    # Exceptions a job ends on when its input was refused, and what to do instead.
    refused: tuple[type[BaseException], ...] = ()
    after_refusal: str = ""

    def input_refused(self, stored_result: str | None) -> str:
        """`after_refusal` if the job ended on one of `refused` (its stored result names
        the exception, as Celery stores a failure), else ''."""
        if not self.refused or not stored_result:
            return ""
        try:
            failure = json.loads(stored_result)
        except ValueError:
            return ""
        if not isinstance(failure, dict):
            return ""
        ended_on = (failure.get("exc_module"), failure.get("exc_type"))
        return self.after_refusal if ended_on in _with_subclasses(self.refused) else ""


def _with_subclasses(classes: Iterable[type[BaseException]]) -> set[tuple[str, str]]:
    """(module, name) of `classes` and of every subclass of theirs."""
    found: set[tuple[str, str]] = set()
    pending = list(classes)
    while pending:
        cls = pending.pop()
        found.add((cls.__module__, cls.__name__))
        pending.extend(cls.__subclasses__())
    return found


UNDECLARED = RetryRule(False, "This task does not declare that running it again is safe.")

_rules: dict[str, RetryRule] = {}


def job_retry_declare(
    task_names: Iterable[str],
    *,
    safe: bool,
    refusal: str = "",
    refused: tuple[type[BaseException], ...] = (),
    after_refusal: str = "",
) -> None:
    if not safe and not refusal:
        raise ValueError("a task that refuses retries must say what to do instead")
    if refused and not after_refusal:
        raise ValueError("a task whose input may be refused must say what to do instead")
    for name in task_names:
        _rules[name] = RetryRule(safe, refusal, refused, after_refusal)


def job_retry_rule(task_name: str | None) -> RetryRule:
    """The rule declared for the task, under its current or a former name."""
    rule = task_name_lookup(_rules, task_name)
    return rule if rule is not None else UNDECLARED
