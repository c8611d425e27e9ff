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
import re
from collections.abc import Iterable
from dataclasses import dataclass

from django.db.models import Q

from workers import job_registry
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


def input_refused_condition() -> Q | None:
    """`input_refused` in SQL, over a TaskResult queryset: the jobs that ended on a refusal
    their task declares (None: no task declares one). What a bulk retry's confirmation
    counts must agree with what the retry then does, and the count covers every job a
    filter matches, too many to decode one by one. Celery stores a failure as JSON with
    `exc_type` and `exc_module` members (kombu's json: `"name": "value"`)."""
    condition = None
    for declared_name, rule in _rules.items():
        for module, type_name in _with_subclasses(rule.refused):
            refusal = (
                # job_retry_declare's parameter of the same name hides the function there.
                Q(task_name__in=job_registry.task_names(declared_name))
                & Q(result__regex=_json_member("exc_type", type_name))
                & Q(result__regex=_json_member("exc_module", module))
            )
            condition = refusal if condition is None else condition | refusal
    return condition


def _json_member(name: str, value: str) -> str:
    """A regular expression for `"name": "value"` as a member of a JSON object (not inside
    a string, where its quotes would be escaped)."""
    return rf'(^|[^\\])"{re.escape(name)}":\s*"{re.escape(value)}"'


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
