"""Terraform's command line: commands we run and the output we read. Pure: no Django.

Runs use `-json` so progress can be counted from events; the log shows each event's
human-readable `@message`, so it reads like terraform's normal output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from json.decoder import scanstring  # type: ignore[attr-defined]
from pathlib import Path
from typing import Any

from workers.errors import ApplicationError

STALE_PLAN = "Saved plan is stale"
LOCK_ERROR = "Error acquiring the state lock"

# Detailed exit codes of `terraform plan -detailed-exitcode`.
PLAN_NO_CHANGES = 0
PLAN_HAS_CHANGES = 2


class WorkspacePathError(ApplicationError, ValueError):
    """A workspace directory that is not inside the configured root."""


def workspace_dir(root: Path, directory: str) -> Path:
    """The absolute directory of a workspace; refuses anything that escapes `root`.

    Symlinks are resolved first, so a link inside the root pointing elsewhere is refused too.
    """
    if not directory or Path(directory).is_absolute():
        raise WorkspacePathError("give the directory relative to TERRAFORM_ROOT")
    base = root.resolve()
    path = (base / directory).resolve()
    if path == base or base not in path.parents:
        raise WorkspacePathError(f"{directory!r} is not inside TERRAFORM_ROOT")
    return path


def common_flags() -> list[str]:
    return ["-input=false", "-no-color"]


def init_command(
    binary: str, *, backend_config: Path | None = None, lockfile_readonly: bool = False
) -> list[str]:
    """`init` in a fresh directory. With `backend_config`, the file of settings for the
    `backend "s3" {}` the configuration declares. `lockfile_readonly` refuses providers other
    than the ones `.terraform.lock.hcl` pins (the apply of a plan made with them)."""
    command = [binary, "init", *common_flags()]
    if backend_config is not None:
        command.append(f"-backend-config={backend_config}")
    if lockfile_readonly:
        command.append("-lockfile=readonly")
    return command


def plan_command(
    binary: str, *, plan_file: Path, destroy: bool, lock_timeout: int, detailed_exitcode: bool
) -> list[str]:
    command = [
        binary,
        "plan",
        *common_flags(),
        "-json",
        f"-lock-timeout={lock_timeout}s",
        f"-out={plan_file}",
    ]
    if destroy:
        command.append("-destroy")
    if detailed_exitcode:
        command.append("-detailed-exitcode")
    return command


def apply_command(binary: str, *, plan_file: Path, lock_timeout: int) -> list[str]:
    # A saved plan: terraform applies exactly it, or refuses if the state moved on.
    return [
        binary,
        "apply",
        *common_flags(),
        "-json",
        f"-lock-timeout={lock_timeout}s",
        str(plan_file),
    ]


def show_plan_command(binary: str, *, plan_file: Path) -> list[str]:
    return [binary, "show", "-json", "-no-color", str(plan_file)]


def output_command(binary: str) -> list[str]:
    return [binary, "output", "-json", "-no-color"]


def force_unlock_command(binary: str, *, lock_id: str) -> list[str]:
    return [binary, "force-unlock", "-force", "-no-color", lock_id]


def variables_environment(
    variables: Mapping[str, Any], secrets: Mapping[str, str]
) -> dict[str, str]:
    """TF_VAR_ variables: terraform reads them itself, so values never appear in argv."""
    environment = {}
    for name, value in variables.items():
        environment[f"TF_VAR_{name}"] = value if isinstance(value, str) else json.dumps(value)
    for name, value in secrets.items():
        environment[f"TF_VAR_{name}"] = value
    return environment


@dataclass(frozen=True)
class Event:
    type: str
    message: str
    data: Mapping[str, Any]


_LEVEL_PREFIX = '{"@level":"'
_MESSAGE_KEY = ',"@message":"'
_TYPE_KEY = ',"type":"'
# Events whose payload the log uses; the rest only need level, message and type.
_FULL_PARSE_TYPES = frozenset({"diagnostic"})
# An event whose message is all the log needs: not an error (kept for the run's summary),
# not counted for progress, not skipped. One regex match, no JSON parse: a busy apply's
# `provision_progress` lines come by the hundred thousand.
# The type is the last "type" key, as parse_event reads it: the atomic group keeps `.*` at
# the last one instead of backtracking to an earlier one.
_PLAIN_START = r'\{"@level":"(?:info|warn|debug|trace)","@message":"'
_LAST_TYPE = r'(?>.*,"type":")'
_PLAIN_EVENT = re.compile(_PLAIN_START + r'([^"\\]*(?:\\.[^"\\]*)*)"' + _LAST_TYPE + r'([a-z_]+)"')
_COUNTED_TYPES = _FULL_PARSE_TYPES | {"version", "planned_change", "apply_complete"}
# _PLAIN_EVENT for every line of a text at once, for messages without escapes: the whole
# line becomes its message in one pass, and what does not match is left as it was.
_PLAIN_EVENT_LINE = re.compile(
    "^"
    + _PLAIN_START
    + r'([^"\\\n]*)"'
    + _LAST_TYPE
    + r"(?!(?:"
    + "|".join(sorted(_COUNTED_TYPES))
    + r')")[a-z_]+".*$',
    re.MULTILINE,
)


def plain_event_message(line: str) -> str | None:
    """The message of an event whose message is all the log needs; None for any other line
    (take those through `parse_event`)."""
    match = _PLAIN_EVENT.match(line)
    if match is None or match[2] in _COUNTED_TYPES:
        return None
    message = match[1]
    return scanstring(message + '"', 0)[0] if "\\" in message else message


def plain_event_messages(text: str) -> str:
    """`text` (lines joined by newlines) with each line that is a plain event without
    escapes in its message replaced by that message. A replaced line never holds `"` (a
    JSON string escapes it), so a line left starting with `{"` was not replaced: those go
    through `plain_event_message` and `parse_event` one by one."""
    # `split` keeps the captured messages between the unmatched parts and runs in C;
    # `sub(r"\1", ...)` would call back into Python for every line.
    return "".join(_PLAIN_EVENT_LINE.split(text))


def parse_event(line: str) -> Event | None:
    """A `-json` UI event, or None for a plain line (terraform prints some outside JSON).

    Terraform writes each event with sorted keys: `@level`, `@message`, ..., `type` last but
    for `ui`. A busy apply prints thousands of events a second, so the three fields the log
    needs are read straight from the line, with the full JSON parse kept for diagnostics and
    for anything that does not have that shape.
    """
    if not line.startswith("{"):
        return None
    if line.startswith(_LEVEL_PREFIX):
        try:
            level, end = scanstring(line, len(_LEVEL_PREFIX))
            if line.startswith(_MESSAGE_KEY, end):
                message, _ = scanstring(line, end + len(_MESSAGE_KEY))
                at = line.rfind(_TYPE_KEY)
                if at > end:
                    kind, _ = scanstring(line, at + len(_TYPE_KEY))
                    if kind not in _FULL_PARSE_TYPES:
                        return Event(type=kind, message=message, data={"@level": level})
        except ValueError:
            return None
    try:
        data = json.loads(line)
    except ValueError:
        return None
    if not isinstance(data, dict) or "@message" not in data:
        return None
    return Event(type=str(data.get("type", "")), message=str(data["@message"]), data=data)


def event_text(event: Event) -> str:
    """What the log shows for an event: the message, plus a diagnostic's detail."""
    diagnostic = event.data.get("diagnostic")
    if event.type == "diagnostic" and isinstance(diagnostic, dict) and diagnostic.get("detail"):
        return f"{event.message}\n{diagnostic['detail']}"
    return event.message


class Progress:
    """Resources done / planned, counted from the events of a plan or apply."""

    def __init__(self, total: int | None = None) -> None:
        self.total = total or 0
        self._known_total = total is not None
        self.done = 0

    def feed(self, event: Event) -> bool:
        """Count one event; True when done or total changed."""
        if event.type == "planned_change" and not self._known_total:
            self.total += 1
            return True
        if event.type == "apply_complete":
            self.done += 1
            self.total = max(self.total, self.done)
            return True
        return False


@dataclass(frozen=True)
class PlanSummary:
    add: int
    change: int
    destroy: int

    @property
    def has_changes(self) -> bool:
        return bool(self.add or self.change or self.destroy)

    @property
    def resources(self) -> int:
        return self.add + self.change + self.destroy

    def as_dict(self) -> dict[str, int]:
        return {"add": self.add, "change": self.change, "destroy": self.destroy}

    def __str__(self) -> str:
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"


def plan_summary(show_json: Mapping[str, Any]) -> PlanSummary:
    """Counts from `terraform show -json <plan>`, as terraform's own "Plan:" line has them.

    A replacement counts once to add and once to destroy; reads and no-ops count nowhere.
    """
    add = change = destroy = 0
    for resource in show_json.get("resource_changes") or ():
        actions: Sequence[str] = resource.get("change", {}).get("actions", ())
        if "create" in actions:
            add += 1
        if "delete" in actions:
            destroy += 1
        if list(actions) == ["update"]:
            change += 1
    return PlanSummary(add=add, change=change, destroy=destroy)


# What a sensitive output is stored as: its name only, never its value.
SENSITIVE_OUTPUT = "(sensitive: not stored)"


def public_outputs(
    output_json: Mapping[str, Any], redact: Callable[[str], str] = lambda text: text
) -> dict[str, Any]:
    """The outputs of `terraform output -json` as stored: sensitive ones by name only, the
    others through `redact` (the run's redactor: an output not declared sensitive may still
    carry a secret variable's value or a credential)."""
    return {
        name: SENSITIVE_OUTPUT
        if output.get("sensitive")
        else _redacted(output.get("value"), redact)
        for name, output in output_json.items()
        if isinstance(output, dict)
    }


def _redacted(value: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {redact(str(k)): _redacted(v, redact) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(item, redact) for item in value]
    return value
