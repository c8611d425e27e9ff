"""The structured plan: what each resource will do, from `terraform show -json <plan>`. Pure.

For the run page, as HCP Terraform shows a plan: every resource address with its action
(create, update, replace, delete, read) and the attributes that change, before → after.
Values are turned into display text here, in the worker, and sensitive ones are replaced by
"(sensitive value)" before anything is stored: the saved plan file holds secrets in clear,
the run's record never does. The result is bounded (resources, attributes, value length) so
a huge plan cannot bloat the row.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

SENSITIVE = "(sensitive value)"
UNKNOWN = "(known after apply)"
MAX_RESOURCES = 500
MAX_ATTRIBUTES = 200
MAX_VALUE_CHARS = 300

# terraform's action lists → one word. Replacement is delete+create in either order.
ACTIONS = {
    ("create",): "create",
    ("update",): "update",
    ("delete",): "delete",
    ("read",): "read",
    ("delete", "create"): "replace",
    ("create", "delete"): "replace",
}


def plan_changes(
    show_json: Mapping[str, Any], *, redact: Callable[[str], str] = str
) -> dict[str, Any]:
    """{"resources": [...], "outputs": [...], "omitted": n} for a plan's changes.

    A resource is {"address", "action", "reason", "attributes": [{"name", "before",
    "after", "forces_replacement"}]}, an output {"address", "action", "before", "after"};
    before/after are display text or None (no value on that side). No-op resources are
    left out. `redact` is applied to every value shown, on top of terraform's own
    sensitivity marks (the worker passes the log's redactor, which knows the workspace's
    secrets).
    """
    resources: list[dict[str, Any]] = []
    omitted = 0
    for change in show_json.get("resource_changes") or ():
        entry = _resource(change, redact)
        if entry is None:
            continue
        if len(resources) >= MAX_RESOURCES:
            omitted += 1
            continue
        resources.append(entry)
    outputs = []
    for name, change in sorted((show_json.get("output_changes") or {}).items()):
        action = _action(change.get("actions", ()))
        if action is not None:
            outputs.append(
                {"address": f"output.{name}", "action": action, **_whole(change, redact)}
            )
    return {"resources": resources, "outputs": outputs, "omitted": omitted}


def _whole(change: Mapping[str, Any], redact: Callable[[str], str]) -> dict[str, str | None]:
    """An output's value before and after, each shown whole (outputs are read as one)."""

    def side(value: Any, sensitive: Any, unknown: Any) -> str | None:
        if unknown is True:
            return UNKNOWN
        if value is None:
            return None
        return SENSITIVE if sensitive is True else redact(_text(_masked(value, sensitive)))

    return {
        "before": side(change.get("before"), change.get("before_sensitive"), None),
        "after": side(
            change.get("after"), change.get("after_sensitive"), change.get("after_unknown")
        ),
    }


def _resource(resource: Mapping[str, Any], redact: Callable[[str], str]) -> dict[str, Any] | None:
    change = resource.get("change") or {}
    action = _action(change.get("actions", ()))
    if action is None:
        return None
    return {
        "address": str(resource.get("address", "?")),
        "action": action,
        "reason": _reason(resource.get("action_reason")),
        "attributes": _attributes(
            change, action, replace_paths=change.get("replace_paths") or (), redact=redact
        ),
    }


def _action(actions: Sequence[str]) -> str | None:
    return ACTIONS.get(tuple(actions))


def _reason(reason: str | None) -> str:
    # terraform's action_reason codes, in the words its own output uses.
    return {
        "replace_because_tainted": "tainted, so must be replaced",
        "replace_because_cannot_update": "must be replaced",
        "replace_by_request": "replacement requested",
        "replace_by_triggers": "replaced by a triggers change",
        "delete_because_no_resource_config": "no longer in the configuration",
        "delete_because_no_module": "its module is no longer in the configuration",
        "delete_because_wrong_repetition": "its count/for_each changed",
        "delete_because_count_index": "its count index is out of range",
        "delete_because_each_key": "its for_each key is gone",
        "read_because_config_unknown": "read during apply: its configuration is not known yet",
        "read_because_dependency_pending": "read during apply: it depends on pending changes",
    }.get(reason or "", reason or "")


def _attributes(
    change: Mapping[str, Any],
    action: str,
    *,
    replace_paths: Sequence[Sequence[Any]],
    redact: Callable[[str], str],
) -> list[dict[str, Any]]:
    after = _leaves(change.get("after"), change.get("after_sensitive"), change.get("after_unknown"))
    # Where the new value is not known yet, the old one is shown whole, as terraform does
    # ("output = {…} -> (known after apply)"), not leaf by leaf.
    unknown = {name for name, leaf in after.items() if leaf.text == UNKNOWN}
    before = _leaves(change.get("before"), change.get("before_sensitive"), None, collapse=unknown)
    forced = {_path_name(path) for path in replace_paths}
    names = list(after) + [name for name in before if name not in after]
    rows: list[dict[str, Any]] = []
    for name in names:
        old, new = before.get(name), after.get(name)
        if action == "delete":
            new = None
        elif action == "create":
            old = None
        if old is None and new is None:
            continue
        if action in ("update", "replace") and old == new:
            continue  # unchanged (a sensitive value compares by its hidden value)
        if len(rows) == MAX_ATTRIBUTES:
            rows.append(
                {
                    "name": "…",
                    "before": None,
                    "after": "more attributes change; see the plan log",
                    "forces_replacement": False,
                }
            )
            break
        rows.append(
            {
                "name": name,
                "before": redact(old.text) if old else None,
                "after": redact(new.text) if new else None,
                "forces_replacement": any(
                    name == f or name.startswith((f"{f}.", f"{f}[")) for f in forced
                ),
            }
        )
    return rows


class _Leaf:
    """One attribute value: its display text, and the raw value only to compare with."""

    __slots__ = ("raw", "sensitive", "text")

    def __init__(self, raw: Any, *, sensitive: bool = False, unknown: bool = False) -> None:
        self.sensitive = sensitive
        self.raw = raw
        if unknown:
            self.text = UNKNOWN
        elif sensitive:
            self.text = SENSITIVE
        else:
            self.text = _text(raw)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, _Leaf)
            and self.text == other.text
            and (self.text == UNKNOWN or self.raw == other.raw)
        )

    def __hash__(self) -> int:
        return hash(self.text)


def _leaves(
    value: Any, sensitive: Any, unknown: Any, *, collapse: frozenset[str] | set[str] = frozenset()
) -> dict[str, _Leaf]:
    """Flatten an object into dotted paths (`tags.Name`, `rule[0].port`) → leaf values;
    a path in `collapse` stays one leaf holding its whole (masked) value."""
    if value is None and not unknown:
        return {}
    return dict(_walk("", value, sensitive, unknown, collapse))


def _walk(
    path: str, value: Any, sensitive: Any, unknown: Any, collapse: frozenset[str] | set[str]
) -> Iterator[tuple[str, _Leaf]]:
    if unknown is True:
        # Known after apply; terraform shows a sensitive one as sensitive.
        yield path, _Leaf(None, sensitive=sensitive is True, unknown=sensitive is not True)
        return
    if value is None:
        return
    if sensitive is True:
        # The whole subtree is sensitive: one leaf, whatever its shape.
        yield path, _Leaf(value, sensitive=True)
        return
    if path in collapse:
        yield path, _Leaf(_masked(value, sensitive))
        return
    if isinstance(value, dict) and value:
        keys = list(value)
        if isinstance(unknown, dict):
            keys += [key for key in unknown if key not in value]
        for key in keys:
            yield from _walk(
                f"{path}.{key}" if path else str(key),
                value.get(key),
                _child(sensitive, key),
                _child(unknown, key),
                collapse,
            )
        return
    if isinstance(value, list) and value:
        for index, item in enumerate(value):
            yield from _walk(
                f"{path}[{index}]",
                item,
                _child(sensitive, index),
                _child(unknown, index),
                collapse,
            )
        return
    if isinstance(value, dict | list) and isinstance(unknown, dict | list) and unknown:
        # An empty known value with unknown members (e.g. a block computed at apply).
        members = unknown.items() if isinstance(unknown, dict) else enumerate(unknown)
        for key, flag in members:
            if flag:
                child = f"{path}.{key}" if isinstance(key, str) else f"{path}[{key}]"
                yield child.lstrip("."), _Leaf(None, unknown=True)
        return
    yield path, _Leaf(value)


def _masked(value: Any, sensitive: Any) -> Any:
    """The value with its sensitive parts replaced, to be shown whole."""
    if sensitive is True:
        return SENSITIVE
    if isinstance(value, dict):
        return {key: _masked(item, _child(sensitive, key)) for key, item in value.items()}
    if isinstance(value, list):
        return [_masked(item, _child(sensitive, index)) for index, item in enumerate(value)]
    return value


def _child(mask: Any, key: str | int) -> Any:
    if isinstance(mask, dict) and isinstance(key, str):
        return mask.get(key)
    if isinstance(mask, list) and isinstance(key, int) and key < len(mask):
        return mask[key]
    return None


def _text(value: Any) -> str:
    """A value as terraform prints it: strings quoted, the rest as JSON; cut when long."""
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if len(text) > MAX_VALUE_CHARS:
        text = text[: MAX_VALUE_CHARS - 1] + "…"
    return text


def _path_name(path: Sequence[Any]) -> str:
    name = ""
    for part in path:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name
