"""Whether a job may be retried: each family declares it for its own tasks.

A retry is a new job with the same arguments. That is harmless for a task that re-reads its
row and does idempotent work (a cover's variants, a diagnostic run), and wrong for one whose
arguments name a step that must not happen twice (a terraform apply of a saved plan: plan
again instead). Each app declares its tasks in its AppConfig.ready(); a task nobody declared
is not retried.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from workers.job_registry import task_name_lookup


@dataclass(frozen=True)
class RetryRule:
    safe: bool
    # Why not, and what to do instead: shown to the person who asked for the retry.
    refusal: str = ""


UNDECLARED = RetryRule(False, "This task does not declare that running it again is safe.")

_rules: dict[str, RetryRule] = {}


def job_retry_declare(task_names: Iterable[str], *, safe: bool, refusal: str = "") -> None:
    if not safe and not refusal:
        raise ValueError("a task that refuses retries must say what to do instead")
    for name in task_names:
        _rules[name] = RetryRule(safe, refusal)


def job_retry_rule(task_name: str | None) -> RetryRule:
    """The rule declared for the task, under its current or a former name."""
    rule = task_name_lookup(_rules, task_name)
    return rule if rule is not None else UNDECLARED
